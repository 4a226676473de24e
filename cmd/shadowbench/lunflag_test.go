package main

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/daemon"
)

func TestParseLUNSpec(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want daemon.LUNConfig
		err  string
	}{
		{in: "name=lun0,size=1GiB", want: daemon.LUNConfig{Name: "lun0", Size: 1 << 30, BlockSize: 512}},
		{in: "size=64MiB,name=db,block-size=4096,read-only=true", want: daemon.LUNConfig{Name: "db", Size: 64 << 20, BlockSize: 4096, ReadOnly: true}},
		{in: "name=a,size=1MB", want: daemon.LUNConfig{Name: "a", Size: 1000000, BlockSize: 512}, err: "not a multiple"},
		{in: "name=a,size=1G", want: daemon.LUNConfig{Name: "a", Size: 1 << 30, BlockSize: 512}},
		{in: "name=a,size=4096", want: daemon.LUNConfig{Name: "a", Size: 4096, BlockSize: 512}},
		{in: "name=big,size=1TiB,thin=true", want: daemon.LUNConfig{Name: "big", Size: 1 << 40, BlockSize: 512, Thin: true}},
		{in: "name=a,size=1GiB,thin=perhaps", err: `thin "perhaps": want true or false`},
		{in: "size=1GiB", err: "name is missing"},
		{in: "name=a", err: "size is missing"},
		{in: "name=a,size=lots", err: `size "lots"`},
		{in: "name=a,size=0", err: `size "0"`},
		{in: "name=a,size=1GiB,block-size=1024", err: `block-size "1024": want 512 or 4096`},
		{in: "name=a,size=1GiB,read-only=maybe", err: `read-only "maybe"`},
		{in: "name=a,size=1GiB,blocksize=4096", err: `unknown key "blocksize": spell it block-size`},
		{in: "name=a,size=1GiB,readonly=true", err: `unknown key "readonly": spell it read-only`},
		{in: "name=a,size=1GiB,colour=red", err: `unknown key "colour"`},
		{in: "name=a,name=b,size=1GiB", err: "name given twice"},
		{in: "name=a,size", err: `"size" is not key=value`},
		{in: "", err: "not key=value"},
	} {
		got, err := parseLUNSpec(tc.in)
		if tc.err != "" {
			require.ErrorContains(t, err, tc.err, tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		tc.want.Flag = tc.in
		require.Equal(t, tc.want, got, tc.in)
	}
}
