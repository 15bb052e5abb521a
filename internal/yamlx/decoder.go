package yamlx

import (
	"bytes"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"
)

// Decoder walks a YAML node tree of one file, collecting every error with
// its position. Its getters report a mistake and return false; the caller
// goes on with the next key, so that one run finds all the mistakes.
type Decoder struct {
	File   string
	Errs   []Error
	merges int // merged mappings so far, bounded against alias bombs
}

// MaxMerges bounds the mappings merged with <<: in one file.
const MaxMerges = 1000

// Errorf reports a mistake at n (line 1 when n is nil or has no place).
func (d *Decoder) Errorf(n *yaml.Node, path, hint, format string, args ...any) {
	line, col := 1, 1
	if n != nil && n.Line > 0 {
		line, col = n.Line, n.Column
	}
	msg := strings.ReplaceAll(fmt.Sprintf(format, args...), "\n", "; ")
	d.Errs = append(d.Errs, Error{File: d.File, Line: line, Col: col, Path: path, Msg: msg, Hint: hint})
}

// Err returns the collected errors sorted as *Errors, or nil when there are none.
func (d *Decoder) Err() error {
	if len(d.Errs) == 0 {
		return nil
	}
	return &Errors{List: Sorted(d.Errs)}
}

// Missing reports a required key that m lacks, at m.
func (d *Decoder) Missing(m *Map, key, hint string) {
	var at *yaml.Node
	path := ""
	if m != nil {
		at, path = m.Node, m.Path
	}
	d.Errorf(at, Join(path, key), hint, "required key is missing")
}

// Map checks that n is a mapping with only known keys (any key when known
// is nil). A nil or null n is an empty mapping. It returns nil when n is
// not a mapping. Merge keys (<<: *anchor) are followed; what they merge
// never overrides keys written in the mapping itself.
func (d *Decoder) Map(n *yaml.Node, path string, known []string) *Map {
	n = Resolve(n)
	m := &Map{Node: n, Path: path, Vals: map[string]*yaml.Node{}, Keys: map[string]*yaml.Node{}}
	if IsNull(n) {
		return m
	}
	if n.Kind != yaml.MappingNode {
		d.Errorf(n, path, "", "expected a mapping of keys, got %s", Describe(n))
		return nil
	}
	d.collect(m, n, known, false, 0)
	return m
}

func (d *Decoder) collect(m *Map, n *yaml.Node, known []string, merged bool, depth int) {
	if depth > 8 {
		d.Errorf(n, m.Path, "", "merge keys nested too deeply")
		return
	}
	if merged {
		if d.merges++; d.merges > MaxMerges {
			if d.merges == MaxMerges+1 {
				d.Errorf(n, m.Path, "", "more than %d merges (<<:) in one file", MaxMerges)
			}
			return
		}
	}
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
			merges = append(merges, v)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.Errorf(k, m.Path, "", "expected a key name, got %s", Describe(k))
			continue
		}
		name := k.Value
		p := Join(m.Path, name)
		if known != nil && !slices.Contains(known, name) {
			d.Errorf(k, p, Suggest(name, known, "known keys"), "unknown key %q", name)
			continue
		}
		if first, dup := m.Keys[name]; dup {
			if merged {
				continue
			}
			d.Errorf(k, p, "", "key %q is set twice; first at line %d", name, first.Line)
			continue
		}
		m.Keys[name] = k
		m.Vals[name] = v
	}
	for _, v := range merges {
		v = Resolve(v)
		switch {
		case v != nil && v.Kind == yaml.MappingNode:
			d.collect(m, v, known, true, depth+1)
		case v != nil && v.Kind == yaml.SequenceNode:
			for _, x := range v.Content {
				if x = Resolve(x); x != nil && x.Kind == yaml.MappingNode {
					d.collect(m, x, known, true, depth+1)
				} else {
					d.Errorf(x, m.Path, "", "merge key <<: expected a mapping, got %s", Describe(x))
				}
			}
		default:
			d.Errorf(v, m.Path, "", "merge key <<: expected a mapping, got %s", Describe(v))
		}
	}
}

// Seq returns the items of a list; a nil n is an empty list.
func (d *Decoder) Seq(n *yaml.Node, path, hint string) ([]*yaml.Node, bool) {
	n = Resolve(n)
	if IsNull(n) {
		return nil, true
	}
	if n.Kind != yaml.SequenceNode {
		d.Errorf(n, path, hint, "expected a list, got %s", Describe(n))
		return nil, false
	}
	return n.Content, true
}

// Str returns a scalar's text. Numbers and booleans are taken as written,
// so values like 001 keep their zeros.
func (d *Decoder) Str(n *yaml.Node, path string) (string, bool) {
	n = Resolve(n)
	if n == nil || n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		d.Errorf(n, path, "", "expected a string, got %s", Describe(n))
		return "", false
	}
	return n.Value, true
}

// Int returns an integer in lo..hi.
func (d *Decoder) Int(n *yaml.Node, path string, lo, hi int64) (int64, bool) {
	n = Resolve(n)
	if n == nil || n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
		hint := ""
		if n != nil && n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
			if _, err := strconv.ParseInt(n.Value, 10, 64); err == nil {
				hint = "write the number without quotes"
			}
		}
		d.Errorf(n, path, hint, "expected an integer, got %s", Describe(n))
		return 0, false
	}
	var v int64
	if err := n.Decode(&v); err != nil {
		d.Errorf(n, path, "", "expected an integer, got %s (%v)", Describe(n), err)
		return 0, false
	}
	if v < lo || v > hi {
		d.Errorf(n, path, "", "%d is out of range %d..%d", v, lo, hi)
		return 0, false
	}
	return v, true
}

// Number returns a finite number, integer or not.
func (d *Decoder) Number(n *yaml.Node, path string) (float64, bool) {
	n = Resolve(n)
	if n == nil || n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!float") {
		d.Errorf(n, path, "", "expected a number, got %s", Describe(n))
		return 0, false
	}
	var v float64
	if err := n.Decode(&v); err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		d.Errorf(n, path, "", "expected a finite number, got %s", Describe(n))
		return 0, false
	}
	return v, true
}

// Bool returns true or false.
func (d *Decoder) Bool(n *yaml.Node, path string) (bool, bool) {
	n = Resolve(n)
	var v bool
	if n == nil || n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || n.Decode(&v) != nil {
		d.Errorf(n, path, "true or false", "expected a boolean, got %s", Describe(n))
		return false, false
	}
	return v, true
}

// OneOf returns a string that is one of allowed.
func (d *Decoder) OneOf(n *yaml.Node, path string, allowed []string) (string, bool) {
	s, ok := d.Str(n, path)
	if !ok {
		return "", false
	}
	if !slices.Contains(allowed, s) {
		d.Errorf(n, path, Suggest(s, allowed, "one of"), "%q is not allowed", s)
		return "", false
	}
	return s, true
}

// DurationHint is the hint of a value that is not a duration.
const DurationHint = "a Go duration such as 200ms, 30s, 5m or 1h30m"

// Duration returns a duration written as text (200ms, 1h30m) in lo..hi.
func (d *Decoder) Duration(n *yaml.Node, path string, lo, hi time.Duration) (time.Duration, bool) {
	n = Resolve(n)
	if n == nil || n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		hint := DurationHint
		if n != nil && n.Kind == yaml.ScalarNode && (n.Tag == "!!int" || n.Tag == "!!float") {
			hint = fmt.Sprintf("add a unit: %sms or %ss", n.Value, n.Value)
		}
		d.Errorf(n, path, hint, "expected a duration, got %s", Describe(n))
		return 0, false
	}
	v, err := time.ParseDuration(strings.TrimSpace(n.Value))
	if err != nil {
		d.Errorf(n, path, DurationHint, "bad duration %q", n.Value)
		return 0, false
	}
	if v < lo || v > hi {
		d.Errorf(n, path, "", "%s is out of range %s..%s", FmtDur(v), FmtDur(lo), FmtDur(hi))
		return 0, false
	}
	return v, true
}

// Parse parses data into its top node (nil for an empty document). A
// syntax error is reported, with the line yaml.v3 gives it, and Parse
// returns false. A panic of the parser is a syntax error too.
func (d *Decoder) Parse(data []byte) (*yaml.Node, bool) {
	var doc yaml.Node
	if err := unmarshal(data, &doc); err != nil {
		d.syntaxError(err, data)
		return nil, false
	}
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		return doc.Content[0], true
	}
	return nil, true
}

func unmarshal(data []byte, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: %v", r)
		}
	}()
	return yaml.Unmarshal(data, n)
}

// parserErrors are the messages of yaml.v3's parser (not its scanner).
// For them yaml.v3 reports a 0-based line; the scanner's lines are 1-based.
var parserErrors = []string{
	"did not find expected <document start>", "did not find expected node content",
	"did not find expected '-' indicator", "did not find expected key",
	"did not find expected ',' or ']'", "did not find expected ',' or '}'",
	"found duplicate %YAML directive", "found incompatible YAML document",
	"found duplicate %TAG directive", "found undefined tag handle",
}

// The patterns of yaml.v3's messages, compiled when a document first has
// a syntax error.
var (
	yamlLineRe      = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^yaml: line (\d+): (.*)$`) })
	unknownAnchorRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^yaml: unknown anchor '(.*)' referenced$`) })
)

func (d *Decoder) syntaxError(err error, data []byte) {
	msg := err.Error()
	line, col := 1, 0
	if m := yamlLineRe().FindStringSubmatch(msg); m != nil {
		if v, e := strconv.Atoi(m[1]); e == nil && v > 0 {
			line = v
		}
		msg = m[2]
		if slices.Contains(parserErrors, msg) {
			line++
		}
	} else if m := unknownAnchorRe().FindStringSubmatch(msg); m != nil {
		msg = strings.TrimPrefix(msg, "yaml: ")
		if i := bytes.Index(data, []byte("*"+m[1])); i >= 0 {
			line = bytes.Count(data[:i], []byte("\n")) + 1
			col = i - bytes.LastIndexByte(data[:i], '\n')
		}
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	d.Errs = append(d.Errs, Error{File: d.File, Line: line, Col: col, Msg: "yaml syntax: " + msg,
		Hint: "check indentation, colons, brackets and quotes near this line"})
}
