package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Problem is one finding about a configuration file. Warnings do not stop a load.
type Problem struct {
	File    string
	Line    int    // 0 when the problem has no place in the file
	Path    string // field path such as datacenters[1].services.api.endpoints[0]
	Message string
	Warning bool
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		b.WriteString(":" + strconv.Itoa(p.Line))
	}
	b.WriteString(": ")
	if p.Warning {
		b.WriteString("warning: ")
	}
	if p.Path != "" {
		b.WriteString(p.Path + ": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// Problems is the list of findings of a load. As an error it reports every
// error (not the warnings), one per line.
type Problems []Problem

// Errors returns only the findings that are errors.
func (ps Problems) Errors() Problems {
	var out Problems
	for _, p := range ps {
		if !p.Warning {
			out = append(out, p)
		}
	}
	return out
}

// Warnings returns only the findings that are warnings.
func (ps Problems) Warnings() Problems {
	var out Problems
	for _, p := range ps {
		if p.Warning {
			out = append(out, p)
		}
	}
	return out
}

func (ps Problems) Error() string {
	var lines []string
	for _, p := range ps.Errors() {
		lines = append(lines, p.String())
	}
	return strings.Join(lines, "\n")
}

// ErrInvalid is wrapped by Load's error when the configuration has errors.
var ErrInvalid = errors.New("invalid configuration")

// LoadFile reads and loads the configuration at path. See Load.
func LoadFile(path string) (*Config, Problems, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	return Load(path, data)
}

// Load decodes data strictly (unknown keys are errors), fills defaults and
// validates. It returns every problem found; the error is non-nil (wrapping
// ErrInvalid) when any problem is an error, in which case the Config is nil.
func Load(name string, data []byte) (*Config, Problems, error) {
	ps, cfg := decode(name, data)
	if len(ps.Errors()) == 0 {
		cfg.Path = name
		cfg.fillDefaults()
		ps = append(ps, cfg.validate()...)
	}
	if len(ps.Errors()) > 0 {
		return nil, ps, fmt.Errorf("%w: %s", ErrInvalid, ps.Error())
	}
	return cfg, ps, nil
}

// locator is how validation finds the line of a field path.
type locator struct {
	file  string
	lines map[string]int
}

func decode(name string, data []byte) (Problems, *Config) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return Problems{{File: name, Line: yamlErrLine(err), Message: cleanYAMLError(err)}}, nil
	}
	loc := &locator{file: name, lines: map[string]int{}}
	byLine := map[int]string{}
	var ps Problems
	if len(root.Content) > 0 {
		walk(root.Content[0], "", reflect.TypeOf(Config{}), loc, byLine, &ps)
	}
	if len(ps) > 0 {
		return ps, nil
	}
	cfg := defaults()
	if len(root.Content) > 0 {
		if err := root.Content[0].Decode(cfg); err != nil {
			var te *yaml.TypeError
			if errors.As(err, &te) {
				for _, msg := range te.Errors {
					line := yamlErrLine(errors.New(msg))
					ps = append(ps, Problem{File: name, Line: line, Path: byLine[line], Message: cleanYAMLError(errors.New(msg))})
				}
			} else {
				line := yamlErrLine(err)
				ps = append(ps, Problem{File: name, Line: line, Path: byLine[line], Message: cleanYAMLError(err)})
			}
			return ps, nil
		}
	}
	cfg.loc = loc
	return nil, cfg
}

var lineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): `)

func yamlErrLine(err error) int {
	m := lineRE.FindStringSubmatch(err.Error())
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func cleanYAMLError(err error) string {
	s := lineRE.ReplaceAllString(err.Error(), "")
	s = strings.TrimPrefix(s, "yaml: ")
	// yaml's type names are Go's; say what a person wrote instead.
	s = strings.ReplaceAll(s, "!!str", "string")
	s = strings.ReplaceAll(s, "!!int", "number")
	s = strings.ReplaceAll(s, "!!seq", "list")
	s = strings.ReplaceAll(s, "!!map", "mapping")
	s = strings.ReplaceAll(s, "!!bool", "boolean")
	return s
}

// walk records the line of every field path and reports keys that the Go types
// do not define, with their path, so a typo is named where it was made.
func walk(n *yaml.Node, path string, t reflect.Type, loc *locator, byLine map[int]string, ps *Problems) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if _, ok := loc.lines[path]; !ok {
		loc.lines[path] = n.Line
	}
	if _, ok := byLine[n.Line]; !ok || len(path) > len(byLine[n.Line]) {
		byLine[n.Line] = path
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		return
	}
	switch n.Kind {
	case yaml.MappingNode:
		switch t.Kind() {
		case reflect.Struct:
			fields := yamlFields(t)
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				ft, ok := fields[k.Value]
				child := join(path, k.Value)
				if !ok {
					*ps = append(*ps, Problem{File: loc.file, Line: k.Line, Path: child,
						Message: fmt.Sprintf("unknown field %q (known: %s)", k.Value, knownList(fields))})
					continue
				}
				loc.lines[child] = k.Line
				walk(v, child, ft, loc, byLine, ps)
			}
		case reflect.Map:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				child := join(path, k.Value)
				loc.lines[child] = k.Line
				walk(v, child, t.Elem(), loc, byLine, ps)
			}
		}
	case yaml.SequenceNode:
		if t.Kind() == reflect.Slice {
			for i, c := range n.Content {
				walk(c, fmt.Sprintf("%s[%d]", path, i), t.Elem(), loc, byLine, ps)
			}
		}
	}
}

var unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if tag == "" || tag == "-" || !f.IsExported() {
			continue
		}
		out[tag] = f.Type
	}
	return out
}

func knownList(fields map[string]reflect.Type) string {
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// UnmarshalYAML accepts a Go duration string such as "800ms" or "1s".
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a duration such as \"800ms\" or \"1s\"", n.Line)
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (want e.g. \"800ms\" or \"1s\")", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// parseTTL reads a TTL written as bare seconds or as a duration.
func parseTTL(n *yaml.Node) (time.Duration, error) {
	bad := fmt.Errorf("line %d: %q is not a TTL (want seconds such as 60, or a duration such as \"1m\")", n.Line, n.Value)
	if n.Kind != yaml.ScalarNode {
		return 0, bad
	}
	s := strings.TrimSpace(n.Value)
	if v, err := strconv.ParseInt(s, 10, 64); err == nil {
		if v < 0 || v > 1<<31-1 {
			return 0, fmt.Errorf("line %d: %q is out of range 0..2147483647 seconds", n.Line, n.Value)
		}
		return time.Duration(v) * time.Second, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, bad
	}
	return v, nil
}

// UnmarshalYAML accepts bare seconds (60) or a duration ("1m").
func (t *TTL) UnmarshalYAML(n *yaml.Node) error {
	v, err := parseTTL(n)
	if err != nil {
		return err
	}
	*t = TTL(v)
	return nil
}

// UnmarshalYAML accepts bare seconds (20) or a duration of whole seconds ("20s").
func (s *Seconds) UnmarshalYAML(n *yaml.Node) error {
	v, err := parseTTL(n)
	if err != nil {
		return err
	}
	if v%time.Second != 0 {
		return fmt.Errorf("line %d: %q is not a whole number of seconds", n.Line, n.Value)
	}
	*s = Seconds(v / time.Second)
	return nil
}

// UnmarshalYAML accepts a count (2) or a percentage ("50%").
func (m *MinHealthy) UnmarshalYAML(n *yaml.Node) error {
	bad := fmt.Errorf("line %d: %q is neither a count (1) nor a percentage (\"50%%\")", n.Line, n.Value)
	if n.Kind != yaml.ScalarNode {
		return bad
	}
	s := strings.TrimSpace(n.Value)
	if p, ok := strings.CutSuffix(s, "%"); ok {
		v, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil {
			return bad
		}
		*m = MinHealthy{Percent: v, IsPercent: true, set: true}
		return nil
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		return bad
	}
	*m = MinHealthy{Count: v, set: true}
	return nil
}

// UnmarshalYAML accepts one string or a list of strings.
func (l *StringList) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*l = StringList{n.Value}
		return nil
	case yaml.SequenceNode:
		out := make(StringList, 0, len(n.Content))
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				return fmt.Errorf("line %d: want a string", c.Line)
			}
			out = append(out, c.Value)
		}
		*l = out
		return nil
	}
	return fmt.Errorf("line %d: want a string or a list of strings", n.Line)
}

// MarshalYAML writes the value back as it would be written by hand.
func (m MinHealthy) MarshalYAML() (any, error) { return m.String(), nil }

// Parse is Load for tests and tools that hold the bytes already.
func Parse(data []byte) (*Config, Problems, error) { return Load("config.yaml", data) }
