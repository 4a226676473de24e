package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/shadowbench/shadowbench/daemon"
)

// apiFlags are the flags shared by the subcommands that talk to the
// daemon: where its API is, and whether to print JSON.
type apiFlags struct {
	api, tokenFile string
	json           bool
}

// bind adds --api, --api-token-file and --json to a command group; its
// subcommands share them.
func (f *apiFlags) bind(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&f.api, "api", "", "the daemon's API: http://HOST:PORT, HOST:PORT or unix:/PATH (default $"+
		daemon.EnvAPI+", else "+daemon.DefaultAPI+")")
	cmd.PersistentFlags().StringVar(&f.tokenFile, "api-token-file", "", "`FILE` holding the TCP API's token (default $"+
		daemon.EnvAPITokenFile+", else the daemon's default, $XDG_RUNTIME_DIR/shadowbench/api-token)")
	cmd.PersistentFlags().BoolVar(&f.json, "json", false, "print the daemon's answer as JSON, and an error as a JSON object on stderr")
}

// client returns a client of the daemon, with its token for a TCP API.
func (f *apiFlags) client() (*daemon.Client, error) {
	return daemon.ClientFor(daemon.ResolveAPI(f.api), f.tokenFile)
}

// call runs fn with a client of the daemon and prints what it returns: the
// text form, or JSON with --json. A snapshot set that failed after it
// started is printed too, before the error.
func (f *apiFlags) call(cmd *cobra.Command, fn func(ctx context.Context, c *daemon.Client) (daemon.Texter, error)) (err error) {
	if f.json {
		defer func() {
			if err != nil {
				err = jsonError{err}
			}
		}()
	}
	c, err := f.client()
	if err != nil {
		return err
	}
	defer c.Close()
	v, err := fn(cmd.Context(), c)
	var ae *daemon.APIError
	if errors.As(err, &ae) && ae.Set != nil {
		if f.json {
			_ = f.print(cmd, ae.Set)
			return err
		}
		// The error first: the report that follows says where it
		// happened, and a set that never ran has little else to say.
		writeError(cmd.ErrOrStderr(), err)
		_ = f.print(cmd, ae.Set)
		return printedError{err}
	}
	if err != nil {
		return err
	}
	return f.print(cmd, v)
}

// printedError is an error the command has printed already: main prints
// nothing more, and exits with its status.
type printedError struct{ err error }

func (e printedError) Error() string { return e.err.Error() }
func (e printedError) Unwrap() error { return e.err }

func (f *apiFlags) print(cmd *cobra.Command, v daemon.Texter) error {
	if f.json {
		enc := json.NewEncoder(cmd.OutOrStdout())
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	return v.WriteText(cmd.OutOrStdout())
}

// jsonError is the error of a command run with --json: main prints it
// on stderr as the API's error body (error, hresult, code) with the exit
// status, for a script to read.
type jsonError struct{ err error }

func (e jsonError) Error() string { return e.err.Error() }
func (e jsonError) Unwrap() error { return e.err }

// writeError prints a command's error on w: as JSON for a jsonError, else
// as "shadowbench: ERROR".
func writeError(w io.Writer, err error) {
	if errors.As(err, new(printedError)) {
		return
	}
	if !errors.As(err, new(jsonError)) {
		fmt.Fprintln(w, "shadowbench:", err)
		return
	}
	body := struct {
		daemon.ErrorBody
		Exit int `json:"exit"`
	}{daemon.ErrorBodyOf(err), exitCode(err)}
	body.Set = nil // printed on stdout, as the answer
	b, _ := json.Marshal(body)
	fmt.Fprintf(w, "%s\n", b)
}
