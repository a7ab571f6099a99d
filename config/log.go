package config

import (
	"fmt"

	"go.yaml.in/yaml/v3"
)

// Log configures the process's log: one log/slog logger, on stderr.
type Log struct {
	// Format is text (logfmt, the default) or json.
	Format string `yaml:"format"`
	// Level is debug, info (the default), warn or error.
	Level string `yaml:"level"`
}

func (c *Config) fillLogDefaults() {
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
}

func (v *validator) log() {
	switch v.c.Log.Format {
	case "text", "json":
	default:
		v.errorf("log.format", "%q is not a log format (want text or json)", v.c.Log.Format)
	}
	switch v.c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		v.errorf("log.level", "%q is not a log level (want debug, info, warn or error)", v.c.Log.Level)
	}
}

// AccessLogSetting is proxy.access_log as written: true or false turns the
// access log on or off (records of the main log), a path writes it as JSON
// lines to that file instead.
type AccessLogSetting struct {
	Set  bool // the key was given
	On   bool
	File string
}

// UnmarshalYAML accepts a boolean or a file path.
func (a *AccessLogSetting) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want true, false or a file path", n.Line)
	}
	var b bool
	if n.ShortTag() == "!!bool" && n.Decode(&b) == nil {
		*a = AccessLogSetting{Set: true, On: b}
		return nil
	}
	if n.Value == "" {
		return fmt.Errorf("line %d: want true, false or a file path", n.Line)
	}
	*a = AccessLogSetting{Set: true, On: true, File: n.Value}
	return nil
}
