package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	"github.com/caddy-uma/caddy-uma/store"
	"github.com/caddy-uma/caddy-uma/store/badgerstore"
	"github.com/caddy-uma/caddy-uma/store/dump"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "uma",
		Usage: "backup|restore|export|import|keys|client|token|resource|policy",
		Short: "Manages the UMA authorization server: store, keys, clients, tokens, rules",
		Long: `
Commands for the uma app (the UMA authorization server).

Backups and moves of the store:
  caddy uma backup   [--address <addr>|--config <path>] [--output <file>]   while Caddy runs
  caddy uma restore  --config <path> [--adapter <name>] [--input <file>] [--force]   (alias: import)
  caddy uma export   --config <path> [--adapter <name>] [--output <file>]   Caddy stopped

The running server, through the admin.api.uma module of its admin
endpoint (--address, default localhost:2019):
  caddy uma keys     list | rotate
  caddy uma client   list | add | remove <client_id>
  caddy uma token    list | revoke --client <id> | --subject <sub>
  caddy uma resource list --owner <subject>
  caddy uma policy   status | reload

Sharing rules, offline, with the server's library and sandbox:
  caddy uma policy   test <dir> | eval --rules <dir> --input <file>

Restore, import and export find the store in a config, as 'caddy run'
would: the storage of the uma app (the uma global option of a Caddyfile,
apps.uma in JSON), with its placeholders expanded from the environment.
From Badger to PostgreSQL and back:

  caddy uma export --config Caddyfile.badger --output uma.dump
  caddy uma import --config Caddyfile.postgres --input uma.dump

or in one pipe, with no file to keep safe afterwards:

  caddy uma export --config Caddyfile.badger | caddy uma import --config Caddyfile.postgres

A dump holds the private signing keys and every live token: it is as
secret as the database (files are created with mode 0600). Export reads a
store that nothing writes to: stop the Caddy that uses it (a Badger
directory cannot even be opened while a Caddy runs on it); backup asks the
running Caddy for one consistent snapshot instead.

Each command has --help. Exit status: 0 done, 1 failed, 2 wrong usage (a
missing or wrong flag or argument); 'policy test' exits 1 when a test
fails.
`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.SetFlagErrorFunc(usageError)
			cmd.RunE = func(cmd *cobra.Command, args []string) error {
				if len(args) > 0 {
					return usageError(cmd, fmt.Errorf("unknown command %q: use one of %s", args[0], strings.Join(subcommandNames(cmd), ", ")))
				}
				return cmd.Help()
			}
			cmd.AddCommand(umaBackupCommand(), umaImportCommand(), umaExportCommand(),
				umaKeysCommand(), umaClientCommand(), umaTokenCommand(), umaResourceCommand(), umaPolicyCommand())
		},
	})
}

// groupCommand is a command whose only job is its subcommands: without
// one it prints its help, and an unknown one is a wrong usage.
func groupCommand(name, short string, subs ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{Use: name + " <command>", Short: short}
	cmd.SetFlagErrorFunc(usageError)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usageError(cmd, fmt.Errorf("unknown command %q: use one of %s", args[0], strings.Join(subcommandNames(cmd), ", ")))
		}
		return cmd.Help()
	}
	cmd.AddCommand(subs...)
	return cmd
}

// subcommandNames lists the names of cmd's subcommands.
func subcommandNames(cmd *cobra.Command) []string {
	var names []string
	for _, c := range cmd.Commands() {
		if c.IsAvailableCommand() {
			names = append(names, c.Name())
		}
	}
	return names
}

// Exit statuses of the uma commands.
const (
	exitOK      = caddy.ExitCodeSuccess
	exitFailure = caddy.ExitCodeFailedStartup // 1
	exitUsage   = 2
)

func umaExportCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "export --config <path> [--adapter <name>] [--output <file>]",
		Short: "Writes everything the uma app's store holds into a dump",
		Long: `
Writes everything the store of the config's uma app holds into a dump: a
file of JSON lines, one per resource and per record, read from one
consistent snapshot of the store, whatever its backend. 'caddy uma import'
reads it into another store.

--output names the file, created with mode 0600 (a temporary file in the
same directory, renamed when the dump is complete, so that the file is
never half written); without it, or with -, the dump goes to stdout, but
never to a terminal.

The store must not be written meanwhile: stop the Caddy that uses it. A
Badger directory cannot be opened while a Caddy runs on it; a PostgreSQL
store can, and the dump is then a snapshot of one moment, without what the
running nodes write after it. The export refuses a Badger directory that
holds no database, and a store that is empty.

The dump is as secret as the database: it holds the private signing keys,
the key that seals permission tickets and every live token.
`,
		Example: `  $ caddy uma export --config Caddyfile --output /root/uma.dump
  $ caddy uma export --config caddy.json | gzip > uma.dump.gz`,
	}
	cmd.Flags().StringP("config", "c", "", "Configuration file of the Caddy whose store to export (required)")
	cmd.Flags().StringP("adapter", "a", "", "Name of the config adapter (default: by the file name, as caddy run)")
	cmd.Flags().StringP("output", "o", "", "File to write the dump to (default: stdout)")
	setUsage(cmd, cmdUMAExport)
	return cmd
}

func umaImportCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "restore --config <path> [--adapter <name>] [--input <file>] [--force]",
		Aliases: []string{"import"},
		Short:   "Reads a dump (of backup or export) into the uma app's store",
		Long: `
Reads a dump written by 'caddy uma backup' or 'caddy uma export' into the
store of the config's
uma app, creating the database if needed (a new Badger directory, the
tables of a new PostgreSQL schema), and then reads the store back to check
that it holds as many resources, and as many records in each namespace, as
the dump.

--input names the dump; a file is checked whole before anything is
written. Without it, or with -, the dump is read from stdin as it comes.
Records that expired since the export are left out.

The store must be empty, and nothing may write to it during the import
(do not start Caddy on it before the import ends). --force imports into a
store that holds data: the dump's resources and records replace those of
the same id or key, and everything else stays, so the result is a mix of
both stores, in which the target's own signing keys, tokens and sessions
stay valid beside the dump's. That is rarely what you want; it is what
completes an import that failed halfway (import the same dump again).
`,
		Example: `  $ caddy uma import --config Caddyfile.postgres --input /root/uma.dump
  $ gunzip -c uma.dump.gz | caddy uma import --config caddy.json`,
	}
	cmd.Flags().StringP("config", "c", "", "Configuration file of the Caddy whose store to import into (required)")
	cmd.Flags().StringP("adapter", "a", "", "Name of the config adapter (default: by the file name, as caddy run)")
	cmd.Flags().StringP("input", "i", "", "Dump to read (default: stdin)")
	cmd.Flags().Bool("force", false, "Import into a store that already holds data, merging the dump into it")
	setUsage(cmd, cmdUMAImport)
	return cmd
}

// setUsage runs fn for cmd, a command that takes only flags.
func setUsage(cmd *cobra.Command, fn caddycmd.CommandFunc) {
	setRun(cmd, 0, func(fl caddycmd.Flags, _ []string) (int, error) { return fn(fl) })
}

// setRun runs fn for cmd with its nargs arguments, and makes wrong flags
// and arguments exit with exitUsage.
func setRun(cmd *cobra.Command, nargs int, fn func(fl caddycmd.Flags, args []string) (int, error)) {
	cmd.SetFlagErrorFunc(usageError)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		switch {
		case nargs == 0 && len(args) > 0:
			return usageError(cmd, fmt.Errorf("unexpected argument %q: the command takes only flags", args[0]))
		case len(args) != nargs:
			return usageError(cmd, fmt.Errorf("the command takes %d argument(s), got %d", nargs, len(args)))
		}
		return caddycmd.WrapCommandFuncForCobra(func(fl caddycmd.Flags) (int, error) { return fn(fl, args) })(cmd, args)
	}
}

// usageError reports a wrong use of cmd, with its usage line, and makes the
// process exit with exitUsage.
func usageError(cmd *cobra.Command, err error) error {
	return caddycmd.WrapCommandFuncForCobra(func(caddycmd.Flags) (int, error) {
		return exitUsage, fmt.Errorf("%w (usage: %s; see --help)", err, cmd.UseLine())
	})(cmd, nil)
}

// cmdUMAExport runs `caddy uma export`.
func cmdUMAExport(fl caddycmd.Flags) (int, error) {
	configFile, adapter, output := fl.String("config"), fl.String("adapter"), fl.String("output")
	if configFile == "" {
		return exitUsage, errors.New("--config is required: the config of the Caddy whose store to export")
	}
	toStdout := output == "" || output == "-"
	if toStdout && term.IsTerminal(int(os.Stdout.Fd())) {
		return exitUsage, errors.New("not writing the dump to a terminal: it holds secrets; give --output <file>, or redirect stdout")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	st, source, err := openUMAStore(configFile, adapter, true)
	if err != nil {
		return exitFailure, err
	}
	defer closeUMAStore(st, source, false)

	out, commit, err := createDump(output)
	if err != nil {
		return exitFailure, err
	}
	n, err := dump.Export(ctx, out, st, source)
	if err == nil && n.Resources+n.Records == 0 {
		err = fmt.Errorf("the store of %s is empty: is it the storage of the Caddy you meant? "+
			"(a store that an authorization server ever ran on holds at least its keys)", source)
	}
	if err := commit(err); err != nil {
		return exitFailure, fmt.Errorf("exporting %s: %w", source, err)
	}
	where := output
	if toStdout {
		where = "stdout"
	}
	fmt.Fprintf(os.Stderr, "exported %d resources and %d records from %s to %s\n", n.Resources, n.Records, source, where)
	return exitOK, nil
}

// cmdUMAImport runs `caddy uma import`.
func cmdUMAImport(fl caddycmd.Flags) (int, error) {
	configFile, adapter, input, force := fl.String("config"), fl.String("adapter"), fl.String("input"), fl.Bool("force")
	if configFile == "" {
		return exitUsage, errors.New("--config is required: the config of the Caddy whose store to import into")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	in := io.Reader(os.Stdin)
	from := "stdin"
	if input == "" || input == "-" {
		if term.IsTerminal(int(os.Stdin.Fd())) {
			return exitUsage, errors.New("no dump to read: give --input <file>, or pipe one into stdin")
		}
	} else {
		f, err := os.Open(input)
		if err != nil {
			return exitFailure, fmt.Errorf("opening the dump: %w", err)
		}
		defer f.Close()
		// The whole file first: a broken or truncated dump writes nothing.
		if _, _, err := dump.Check(f); err != nil {
			return exitFailure, fmt.Errorf("%s: %w; nothing was imported", input, err)
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return exitFailure, fmt.Errorf("reading the dump again: %w", err)
		}
		in, from = f, input
	}

	st, target, err := openUMAStore(configFile, adapter, false)
	if err != nil {
		return exitFailure, err
	}
	res, err := dump.Import(ctx, in, st, dump.Options{Force: force})
	closeErr := closeUMAStore(st, target, true)
	switch {
	case errors.Is(err, dump.ErrNotEmpty):
		return exitFailure, fmt.Errorf("importing into %s: %w; import into a new, empty store (a new Badger directory, "+
			"a new PostgreSQL schema or database), or give --force to merge the dump into this one "+
			"(its own keys, tokens and sessions then stay valid beside the dump's)", target, err)
	case err != nil && res.Written.Resources+res.Written.Records > 0:
		return exitFailure, fmt.Errorf("importing %s into %s: %w; the store now holds part of the dump "+
			"(%d resources and %d records): import the same dump again with --force to complete it, or empty the store",
			from, target, err, res.Written.Resources, res.Written.Records)
	case err != nil:
		return exitFailure, fmt.Errorf("importing %s into %s: %w", from, target, err)
	case closeErr != nil:
		return exitFailure, closeErr
	}
	fmt.Fprintf(os.Stderr, "imported %d resources and %d records into %s (dump of %s taken at %s",
		res.Written.Resources, res.Written.Records, target, sourceName(res.Header), res.Header.CreatedAt.Format("2006-01-02 15:04:05Z07:00"))
	if res.Expired > 0 {
		fmt.Fprintf(os.Stderr, "; %d records had expired since and were left out", res.Expired)
	}
	fmt.Fprintln(os.Stderr, ")")
	return exitOK, nil
}

// sourceName is the source of a dump's header, for messages.
func sourceName(h dump.Header) string {
	if h.Source == "" {
		return "an unnamed store"
	}
	return h.Source
}

// openUMAStore opens the store of the uma app of a config file, through
// its storage module (the module's Provision, Validate and Open, as a
// running Caddy would), and returns it with its name: the module ID and
// pool key. For an export, a database that does not exist is an error,
// rather than a new one.
func openUMAStore(configFile, adapter string, mustExist bool) (store.Store, string, error) {
	cfgJSON, _, _, err := caddycmd.LoadConfig(configFile, adapter)
	if err != nil {
		return nil, "", fmt.Errorf("loading the config %s: %w", configFile, err)
	}
	var cfg struct {
		Apps map[string]json.RawMessage `json:"apps"`
	}
	if err := json.Unmarshal(cfgJSON, &cfg); err != nil {
		return nil, "", fmt.Errorf("reading the config %s: %w", configFile, err)
	}
	raw, ok := cfg.Apps["uma"]
	if !ok {
		return nil, "", fmt.Errorf("the config %s has no uma app: its store is the storage of the uma global option "+
			"(Caddyfile) or of apps.uma (JSON)", configFile)
	}
	var app struct {
		Storage json.RawMessage `json:"storage"`
	}
	if err := json.Unmarshal(raw, &app); err != nil {
		return nil, "", fmt.Errorf("reading the uma app of %s: %w", configFile, err)
	}

	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	a := &App{Storage: app.Storage}
	if err := a.loadStorage(ctx); err != nil {
		return nil, "", fmt.Errorf("the uma app of %s: %w", configFile, err)
	}
	name := storeKey(a.storage)
	if f, ok := a.storage.(storageFinder); ok && mustExist {
		if err := f.checkExists(); err != nil {
			return nil, "", err
		}
	}
	st, err := a.storage.Open(caddy.Log().Named("uma.storage"))
	if errors.Is(err, badgerstore.ErrLocked) {
		err = fmt.Errorf("%w; export and import open the database themselves: stop that Caddy first", err)
	}
	if err != nil {
		return nil, "", fmt.Errorf("opening storage %s: %w", name, err)
	}
	return st, name, nil
}

// closeUMAStore closes a store that openUMAStore opened. A failure is
// returned when it matters (after writing), and logged otherwise.
func closeUMAStore(st store.Store, name string, wrote bool) error {
	err := st.Close()
	if err == nil {
		return nil
	}
	err = fmt.Errorf("closing storage %s: %w", name, err)
	if !wrote {
		caddy.Log().Warn(err.Error())
		return nil
	}
	return err
}

// createDump opens the output of an export: stdout for "" or "-",
// otherwise a temporary file of mode 0600 beside path. commit ends the
// output: for a file, if err is nil, it syncs the file and renames it to
// path; otherwise it removes it. It returns err, or the error of ending.
func createDump(path string) (w io.Writer, commit func(err error) error, _ error) {
	if path == "" || path == "-" {
		return os.Stdout, func(err error) error { return err }, nil
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*") // mode 0600
	if err != nil {
		return nil, nil, fmt.Errorf("creating the dump file: %w", err)
	}
	return tmp, func(err error) error {
		if err == nil {
			err = tmp.Sync()
		}
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp.Name(), path)
		}
		if err != nil {
			_ = os.Remove(tmp.Name())
			return err
		}
		if d, derr := os.Open(dir); derr == nil {
			_ = d.Sync() // the rename, durable
			_ = d.Close()
		}
		return nil
	}, nil
}
