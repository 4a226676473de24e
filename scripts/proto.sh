#!/usr/bin/env bash
# Regenerates the code generated from provider/wire/provider.proto: the Go
# messages and services (provider/wire/wirepb) with the protoc-gen-go and
# protoc-gen-go-grpc that go.mod pins as tools, and the Python messages of
# the sample provider (examples/python-provider/provider_pb2.py). Needs
# protoc (Debian's protobuf-compiler).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v protoc >/dev/null || { echo "proto: protoc is missing (Debian package protobuf-compiler)" >&2; exit 1; }
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/protoc-gen-go" google.golang.org/protobuf/cmd/protoc-gen-go
go build -o "$bin/protoc-gen-go-grpc" google.golang.org/grpc/cmd/protoc-gen-go-grpc
cd provider/wire
protoc --plugin=protoc-gen-go="$bin/protoc-gen-go" --plugin=protoc-gen-go-grpc="$bin/protoc-gen-go-grpc" \
  --go_out=wirepb --go_opt=paths=source_relative \
  --go-grpc_out=wirepb --go-grpc_opt=paths=source_relative \
  --python_out=../../examples/python-provider \
  provider.proto
