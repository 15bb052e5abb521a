package rules

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/types"
	"github.com/expr-lang/expr/vm"

	"github.com/luling-edge/luling/payload"
)

// Names every expression environment holds. A field with one of these
// names is reached as fields["name"].
var baseNames = []string{"value", "fields", "tags", "device", "measurement", "time", "rule", "name"}

// maxWindow bounds count_within's window.
const maxWindow = 24 * time.Hour

// program is a compiled expression and what it uses.
type program struct {
	src  string
	prog *vm.Program
}

// template is text with {{ expression }} parts.
type template struct {
	lits  []string   // len(progs)+1 literal parts
	progs []*program // the expressions between them
}

// single reports whether the template is one expression and nothing else,
// so that its typed result is used as it is.
func (t *template) single() bool {
	return len(t.progs) == 1 && t.lits[0] == "" && t.lits[1] == ""
}

// compiler compiles the expressions of one rule.
type compiler struct {
	r    *rule
	opts []expr.Option
	errs *[]Error
	def  *Def
}

// uses is what the expressions of a rule reach.
type uses struct {
	fields    map[string]bool // bare field names
	allFields bool            // the fields map
	timeDep   bool            // held_for or now: time alone changes the result
	window    time.Duration   // longest count_within window
}

func (c *compiler) errorf(pos Pos, path, format string, args ...any) {
	*c.errs = append(*c.errs, Error{File: c.def.File, Line: max(pos.Line, 1), Col: pos.Col, Rule: c.def.Name,
		RuleLine: c.def.Line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// compile compiles src; asBool asks for a condition. On error it records a
// positioned Error and returns nil.
func (c *compiler) compile(src string, asBool bool, pos Pos, path string, u *uses) *program {
	opts := c.opts
	if asBool {
		opts = append(opts[:len(opts):len(opts)], expr.AsBool())
	}
	p, err := compileSafe(src, opts)
	if err != nil {
		var fe *file.Error
		if errors.As(err, &fe) {
			c.errorf(pos, path, "%s (expression %d:%d)", fe.Message, fe.Line, fe.Column+1)
		} else if asBool {
			c.errorf(pos, path, "a condition must be true or false: %v", err)
		} else {
			c.errorf(pos, path, "%v", err)
		}
		return nil
	}
	if !c.analyze(p, src, pos, path, u) {
		return nil
	}
	return &program{src: src, prog: p}
}

func compileSafe(src string, opts []expr.Option) (p *vm.Program, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("cannot compile: %v", r)
		}
	}()
	return expr.Compile(src, opts...)
}

// visitor collects the names and helper calls of an expression.
type visitor struct {
	c     *compiler
	src   string
	pos   Pos
	path  string
	u     *uses
	calls map[ast.Node]bool
	ok    bool
}

func (v *visitor) Visit(n *ast.Node) {
	switch x := (*n).(type) {
	case *ast.CallNode:
		id, ok := x.Callee.(*ast.IdentifierNode)
		if !ok {
			return
		}
		v.calls[id] = true
		switch id.Value {
		case "held_for", "held", "now":
			v.u.timeDep = true
		case "count_within":
			s, ok := x.Arguments[0].(*ast.StringNode)
			l, col := position(v.src, x.Arguments[0].Location().From)
			if !ok {
				v.c.errorf(v.pos, v.path, "count_within needs a literal window such as \"60s\" (expression %d:%d)", l, col)
				v.ok = false
				return
			}
			w, err := time.ParseDuration(s.Value)
			if err != nil || w <= 0 || w > maxWindow {
				v.c.errorf(v.pos, v.path, "count_within: bad window %q, want a duration from 1ms to 24h (expression %d:%d)", s.Value, l, col)
				v.ok = false
				return
			}
			v.u.window = max(v.u.window, w)
		}
	case *ast.IdentifierNode:
		if v.calls[x] {
			return
		}
		switch {
		case x.Value == "fields":
			v.u.allFields = true
		case !contains(baseNames, x.Value):
			if _, ok := v.c.r.fieldTypes[x.Value]; ok {
				v.u.fields[x.Value] = true
			}
		}
	}
}

func (c *compiler) analyze(p *vm.Program, src string, pos Pos, path string, u *uses) bool {
	node := p.Node()
	// Callees are visited after their call node (post-order walk), so mark
	// them first in a pre-pass.
	v := &visitor{c: c, src: src, pos: pos, path: path, u: u, calls: map[ast.Node]bool{}, ok: true}
	pre := &callMarker{calls: v.calls}
	ast.Walk(&node, pre)
	ast.Walk(&node, v)
	return v.ok
}

type callMarker struct{ calls map[ast.Node]bool }

func (m *callMarker) Visit(n *ast.Node) {
	if x, ok := (*n).(*ast.CallNode); ok {
		m.calls[x.Callee] = true
	}
}

// position turns a rune offset of src into a 1-based line and column.
func position(src string, from int) (int, int) {
	line, col, i := 1, 1, 0
	for _, r := range src {
		if i == from {
			break
		}
		if r == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
		i++
	}
	return line, col
}

// template compiles a text with {{ expression }} parts.
func (c *compiler) template(s string, pos Pos, path string, u *uses) *template {
	t := &template{}
	rest := s
	for {
		i := strings.Index(rest, "{{")
		if i < 0 {
			t.lits = append(t.lits, rest)
			break
		}
		j := strings.Index(rest[i+2:], "}}")
		if j < 0 {
			c.errorf(pos, path, "template has {{ without a closing }}: %q", s)
			return nil
		}
		t.lits = append(t.lits, rest[:i])
		src := strings.TrimSpace(rest[i+2 : i+2+j])
		if src == "" {
			c.errorf(pos, path, "template has an empty {{ }}: %q", s)
			return nil
		}
		p := c.compile(src, false, pos, fmt.Sprintf("%s {{%s}}", path, src), u)
		if p == nil {
			return nil
		}
		t.progs = append(t.progs, p)
		rest = rest[i+2+j+2:]
	}
	return t
}

// valueOf compiles an action value: a template when it is text, else a constant.
func (c *compiler) valueOf(v any, pos Pos, path string, u *uses) (any, *template) {
	if s, ok := v.(string); ok && strings.Contains(s, "{{") {
		return nil, c.template(s, pos, path, u)
	}
	return v, nil
}

// render runs a template in env.
func (t *template) render(env map[string]any) (any, error) {
	if t.single() {
		return runProgram(t.progs[0], env)
	}
	if len(t.progs) == 0 {
		return t.lits[0], nil
	}
	var b strings.Builder
	for i, p := range t.progs {
		b.WriteString(t.lits[i])
		v, err := runProgram(p, env)
		if err != nil {
			return nil, err
		}
		b.WriteString(format(v))
	}
	b.WriteString(t.lits[len(t.lits)-1])
	return b.String(), nil
}

func (t *template) renderString(env map[string]any) (string, error) {
	v, err := t.render(env)
	if err != nil {
		return "", err
	}
	return format(v), nil
}

func runProgram(p *program, env map[string]any) (out any, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s: %v", p.src, r)
		}
	}()
	out, err = expr.Run(p.prog, env)
	if err != nil {
		var fe *file.Error
		if errors.As(err, &fe) {
			return nil, fmt.Errorf("%s: %s (expression %d:%d)", p.src, fe.Message, fe.Line, fe.Column+1)
		}
		return nil, fmt.Errorf("%s: %w", p.src, err)
	}
	return out, nil
}

// format prints an expression result in a message.
func format(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case time.Duration:
		return fmtDuration(x)
	case time.Time:
		return x.UTC().Format(time.RFC3339)
	case payload.Value:
		return x.Str()
	}
	return fmt.Sprint(v)
}

// fmtDuration prints a duration without trailing zero units: 2h, 2h30m, 45s.
func fmtDuration(d time.Duration) string {
	if d >= time.Second {
		d = d.Round(time.Second)
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// toValue turns an expression result or YAML constant into a record value.
func toValue(v any) (payload.Value, error) {
	switch x := v.(type) {
	case bool:
		return payload.Bool(x), nil
	case int:
		return payload.Int(int64(x)), nil
	case int64:
		return payload.Int(x), nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return payload.Value{}, fmt.Errorf("value %v is not a finite number", x)
		}
		return payload.Float(x), nil
	case string:
		return payload.String(x), nil
	case time.Duration:
		return payload.Float(x.Seconds()), nil
	case payload.Value:
		if !x.Valid() {
			return payload.Value{}, errors.New("value is not valid")
		}
		return x, nil
	case nil:
		return payload.Value{}, errors.New("value is nil (a field or virtual value that is not there?)")
	}
	return payload.Value{}, fmt.Errorf("value of type %T cannot be written or recorded", v)
}

// exprType is the expression type of a field of type t.
func exprType(t payload.ValueType) types.Type {
	switch t {
	case payload.TypeBool:
		return types.Bool
	case payload.TypeInt:
		return types.Int
	case payload.TypeFloat:
		return types.TypeOf(0.0)
	}
	return types.String
}

// native converts a record value to the Go type the expression was compiled for.
func native(v payload.Value, t payload.ValueType) any {
	switch t {
	case payload.TypeBool:
		return v.Bool()
	case payload.TypeInt:
		return int(v.Int())
	case payload.TypeFloat:
		return v.Float()
	case payload.TypeString:
		return v.Str()
	}
	return v.Interface()
}

func parseType(s string) payload.ValueType {
	switch s {
	case "bool":
		return payload.TypeBool
	case "int":
		return payload.TypeInt
	case "float":
		return payload.TypeFloat
	}
	return payload.TypeString
}
