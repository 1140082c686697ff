package cli

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/pflag"
)

// UsageError marks an error in how a command was invoked (unknown flag,
// wrong number of arguments) as opposed to an invalid value.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

// Usagef builds a UsageError.
func Usagef(format string, a ...any) error { return UsageError{fmt.Errorf(format, a...)} }

// NewFlagSet returns a pflag set that reports errors instead of exiting and
// prints help (man-page style text) for -h/--help.
func NewFlagSet(name, help string) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SortFlags = false
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.BoolP("help", "h", false, "show this help and exit")
	fs.Usage = func() {
		fmt.Fprint(os.Stdout, help)
		fmt.Fprintf(os.Stdout, "\nOPTIONS\n%s", fs.FlagUsagesWrapped(100))
	}
	return fs
}

// Parse parses args; it returns done=true when --help was given (the help
// has then been printed), and a UsageError for any flag error.
func Parse(fs *pflag.FlagSet, args []string) (done bool, err error) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			fs.Usage()
			return true, nil
		}
		return false, UsageError{err}
	}
	if h, _ := fs.GetBool("help"); h {
		fs.Usage()
		return true, nil
	}
	return false, nil
}

// Exit prints err as "prog: message" with a hint for usage errors and exits
// with usageCode for a UsageError or code otherwise.
func Exit(prog string, err error, code, usageCode int) {
	var ue UsageError
	if errors.As(err, &ue) {
		fmt.Fprintf(os.Stderr, "%s: %v\nTry '%s --help' for more information.\n", prog, err, prog)
		os.Exit(usageCode)
	}
	fmt.Fprintf(os.Stderr, "%s: %v\n", prog, err)
	os.Exit(code)
}
