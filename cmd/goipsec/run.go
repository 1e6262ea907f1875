package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/goipsec/goipsec/internal/config"
	"github.com/goipsec/goipsec/internal/daemon"
	"github.com/goipsec/goipsec/internal/logging"
)

func init() { subcommands = append(subcommands, newRunCmd) }

func newRunCmd() *cobra.Command {
	var cfgPath, level, format, userName, groupName, cpuProfile string
	var check bool
	c := &cobra.Command{
		Use:   "run -c FILE",
		Short: "Run the daemon in the foreground",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfgPath == "" {
				return &exitError{code: 2, err: fmt.Errorf("run: -c FILE is required")}
			}
			cfg, err := config.Load(cfgPath)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			if userName != "" { // --user replaces daemon.user and its group
				cfg.Daemon.User, cfg.Daemon.Group = userName, ""
			}
			if groupName != "" {
				cfg.Daemon.Group = groupName
			}
			creds, err := daemon.LookupCredentials(cfg.Daemon.User, cfg.Daemon.Group)
			if err != nil {
				return &exitError{code: 2, err: fmt.Errorf("%s: %w", cfgPath, err)}
			}
			// --log-level and --log-format override the log section.
			var cli logging.Levels
			cliDefault := false
			if level != "" {
				if cli, cliDefault, err = logging.ParseSpec(level); err != nil {
					return &exitError{code: 2, err: fmt.Errorf("--log-level: %w", err)}
				}
			}
			if format == "" {
				format = cfg.Log.Format
			}
			levels, err := daemon.LogLevels(cfg, cli, cliDefault)
			if err != nil {
				return &exitError{code: 2, err: fmt.Errorf("%s: %w", cfgPath, err)}
			}
			logs, err := logging.New(format, zapcore.Lock(os.Stderr), levels)
			if err != nil {
				return &exitError{code: 2, err: fmt.Errorf("--log-format: %w", err)}
			}
			log := logs.Logger
			defer log.Sync()
			daemon.Version = version
			d, err := daemon.New(cfg, log)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			d.SetLogs(logs, cli, cliDefault)
			if check {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: configuration OK\n", cfgPath)
				return nil
			}
			d.SetConfigPath(cfgPath)
			// SIGINT or SIGTERM: delete the IKE SAs (telling the peers),
			// remove the routes and the TUN device, exit 0. A second one
			// kills the process at once.
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			go func() {
				<-ctx.Done()
				stop() // a second signal now kills the process
			}()
			// SIGHUP: reload the configuration file, like goipsec reload.
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			go func() {
				for {
					select {
					case <-ctx.Done():
						return
					case <-hup:
						log.Info("SIGHUP: reloading", zap.String("file", cfgPath))
						_ = d.Reload(ctx) // logged; the running configuration stays on error
					}
				}
			}()
			if cpuProfile != "" {
				stopProfile, err := startCPUProfile(cpuProfile)
				if err != nil {
					return &exitError{code: 2, err: err}
				}
				defer stopProfile()
			}
			return d.RunAs(ctx, creds)
		},
	}
	c.Flags().StringVarP(&cfgPath, "config", "c", "", "configuration file (YAML)")
	c.Flags().StringVar(&level, "log-level", "", "LEVEL (debug, info, warn, error) and/or SUBSYSTEM=LEVEL, comma-separated, e.g. info,ike=debug,esp=warn (subsystems: "+strings.Join(logging.Subsystems, ", ")+"); overrides log.level and log.levels")
	c.Flags().StringVar(&format, "log-format", "", "console or json; overrides log.format (default console)")
	c.Flags().BoolVar(&check, "check", false, "validate the configuration and exit")
	c.Flags().StringVar(&userName, "user", "", "once set up, switch to this user, keeping no capability (Linux; overrides daemon.user)")
	c.Flags().StringVar(&groupName, "group", "", "the group for --user or daemon.user (default: the user's primary group)")
	c.Flags().StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile (pprof) of the whole run to this file, completed at shutdown")
	return c
}

// startCPUProfile starts a CPU profile written to path (created before any
// privilege drop) and returns the function that completes it.
func startCPUProfile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// newLogger builds a logger for commands other than run: spec as
// --log-level takes it, format console or json.
func newLogger(spec, format string) (*zap.Logger, error) {
	lv, _, err := logging.ParseSpec(spec)
	if err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	logs, err := logging.New(format, zapcore.Lock(os.Stderr), lv)
	if err != nil {
		return nil, fmt.Errorf("--log-format: %w", err)
	}
	return logs.Logger, nil
}
