package daemon

import (
	"go.uber.org/zap"

	"github.com/goipsec/goipsec/internal/config"
	"github.com/goipsec/goipsec/internal/logging"
)

// logControl is how a reload changes the log levels.
type logControl struct {
	logs       *logging.Logs
	cli        logging.Levels // --log-level, on top of the configuration
	cliDefault bool           // --log-level sets the default level
}

// SetLogs lets reloads change the levels of logs: the configuration's
// log.level and log.levels, overridden by cli (from --log-level; its
// default level only if cliDefault).
func (d *Daemon) SetLogs(logs *logging.Logs, cli logging.Levels, cliDefault bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.logc = &logControl{logs: logs, cli: cli, cliDefault: cliDefault}
}

// LogLevels returns the levels of cfg's log section with the command
// line's on top.
func LogLevels(cfg *config.Config, cli logging.Levels, cliDefault bool) (logging.Levels, error) {
	lv, err := logging.FromConfig(cfg.Log.Level, cfg.Log.Levels)
	if err != nil {
		return lv, err
	}
	return lv.Override(cli, cliDefault), nil
}

// applyLogLevels sets the levels cfg asks for (reload); d.mu is held.
func (d *Daemon) applyLogLevels(cfg *config.Config) {
	c := d.logc
	if c == nil {
		return
	}
	lv, err := LogLevels(cfg, c.cli, c.cliDefault)
	if err != nil {
		d.log.Error("log levels unchanged", zap.Error(err))
		return
	}
	if old := c.logs.Levels(); old.String() != lv.Full().String() {
		c.logs.SetLevels(lv)
		d.log.Info("log levels changed", zap.Stringer("levels", lv))
	}
}
