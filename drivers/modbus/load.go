package modbus

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/luling-edge/luling/internal/yamlx"
	"github.com/luling-edge/luling/payload"
)

// MaxProfileBytes bounds a profile file.
const MaxProfileBytes = 1 << 20

// The YAML documents, as the loader reads them (internal/yamlx: unknown
// keys, wrong types and out-of-range numbers are errors with their place).
type profileDoc struct {
	Name        string
	Description string
	Measurement string
	Blocks      []blockDoc
	Fields      []fieldDoc
}

type blockDoc struct {
	Name     string
	Function string
	Address  *uint16
	Count    int
}

type fieldDoc struct {
	Name           string
	Description    string
	Block          string
	Address        *uint16
	Type           string
	Bit            *int
	Length         int
	Scale          *float64
	Offset         *float64
	WordOrder      string
	ByteOrder      string
	Output         string
	Values         *yaml.Node // nil when absent
	NotImplemented *yaml.Node
	Publish        *bool
	Writable       bool
	Min            *float64
	Max            *float64
}

// Keys of each mapping, in the order the README lists them.
var (
	profileKeys = []string{"name", "description", "measurement", "blocks", "fields"}
	blockKeys   = []string{"name", "function", "address", "count"}
	fieldKeys   = []string{"name", "description", "block", "address", "type", "bit", "length", "scale", "offset",
		"word_order", "byte_order", "output", "values", "not_implemented", "publish", "writable", "min", "max"}
)

// ProfileError is one problem in a profile file, at a line (and column
// when known): FILE:LINE[:COL]: [key: ]message[ (hint)], the format of
// every YAML error of the project.
type ProfileError = yamlx.Error

// loader collects the problems of one file.
type loader struct {
	*yamlx.Decoder
	root *yaml.Node // the document's top mapping
}

func (l *loader) errorf(line int, format string, args ...any) {
	l.Errs = append(l.Errs, yamlx.Error{File: l.File, Line: max(line, 1), Msg: fmt.Sprintf(format, args...)})
}

// err returns the problems found, joined (each a *ProfileError), or nil.
func (l *loader) err() error {
	if len(l.Errs) == 0 {
		return nil
	}
	errs := make([]error, len(l.Errs))
	for i := range l.Errs {
		errs[i] = &l.Errs[i]
	}
	return errors.Join(errs...)
}

// mapValue returns the key and value nodes of key in mapping n.
func mapValue(n *yaml.Node, key string) (k, v *yaml.Node) {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i], n.Content[i+1]
		}
	}
	return nil, nil
}

// item returns the i-th element of the sequence under key in the root.
func (l *loader) item(key string, i int) *yaml.Node {
	_, seq := mapValue(l.root, key)
	seq = yamlx.Resolve(seq)
	if seq == nil || seq.Kind != yaml.SequenceNode || i >= len(seq.Content) {
		return nil
	}
	return yamlx.Resolve(seq.Content[i])
}

// line returns the line of key within node n, or of n itself when the key
// is absent, or of the whole file's top key.
func (l *loader) line(n *yaml.Node, key string) int {
	if k, _ := mapValue(n, key); k != nil {
		return k.Line
	}
	if n != nil {
		return n.Line
	}
	return 0
}

func (l *loader) topLine(key string) int { return l.line(l.root, key) }

// doc reads the profile's mappings into a profileDoc, reporting what does
// not fit.
func (l *loader) doc(root *yaml.Node) profileDoc {
	var pd profileDoc
	m := l.Map(root, "", profileKeys)
	l.str(m, "name", &pd.Name)
	l.str(m, "description", &pd.Description)
	l.str(m, "measurement", &pd.Measurement)
	blocks, _ := l.Seq(m.Get("blocks"), "blocks", "a list of read blocks")
	for i, it := range blocks {
		bm := l.Map(it, fmt.Sprintf("blocks[%d]", i), blockKeys)
		var b blockDoc
		l.str(bm, "name", &b.Name)
		l.str(bm, "function", &b.Function)
		b.Address = l.address(bm)
		l.integer(bm, "count", &b.Count)
		pd.Blocks = append(pd.Blocks, b)
	}
	fields, _ := l.Seq(m.Get("fields"), "fields", "a list of fields")
	for i, it := range fields {
		pd.Fields = append(pd.Fields, l.fieldDoc(l.Map(it, fmt.Sprintf("fields[%d]", i), fieldKeys)))
	}
	return pd
}

func (l *loader) fieldDoc(fm *yamlx.Map) fieldDoc {
	var f fieldDoc
	for key, dst := range map[string]*string{"name": &f.Name, "description": &f.Description, "block": &f.Block, "type": &f.Type,
		"word_order": &f.WordOrder, "byte_order": &f.ByteOrder, "output": &f.Output} {
		l.str(fm, key, dst)
	}
	f.Address = l.address(fm)
	if n := fm.Get("bit"); n != nil {
		f.Bit = new(int)
		l.integer(fm, "bit", f.Bit)
	}
	l.integer(fm, "length", &f.Length)
	for key, dst := range map[string]**float64{"scale": &f.Scale, "offset": &f.Offset, "min": &f.Min, "max": &f.Max} {
		if n := fm.Get(key); n != nil {
			if v, ok := l.Number(n, yamlx.Join(fm.Path, key)); ok {
				*dst = &v
			}
		}
	}
	f.Values = yamlx.Resolve(fm.Get("values"))
	f.NotImplemented = yamlx.Resolve(fm.Get("not_implemented"))
	if n := fm.Get("publish"); n != nil {
		if v, ok := l.Bool(n, yamlx.Join(fm.Path, "publish")); ok {
			f.Publish = &v
		}
	}
	if n := fm.Get("writable"); n != nil {
		f.Writable, _ = l.Bool(n, yamlx.Join(fm.Path, "writable"))
	}
	return f
}

// str reads a string key of m into dst, when it is there.
func (l *loader) str(m *yamlx.Map, key string, dst *string) {
	if n := m.Get(key); n != nil {
		*dst, _ = l.Str(n, yamlx.Join(m.Path, key))
	}
}

// integer reads an integer key of m into dst, when it is there; the
// builder checks its range, with messages in profile terms.
func (l *loader) integer(m *yamlx.Map, key string, dst *int) {
	if n := m.Get(key); n != nil {
		v, _ := l.Int(n, yamlx.Join(m.Path, key), math.MinInt32, math.MaxInt32)
		*dst = int(v)
	}
}

// address reads a register address, 0..65535.
func (l *loader) address(m *yamlx.Map) *uint16 {
	n := m.Get("address")
	if n == nil {
		return nil
	}
	v, ok := l.Int(n, yamlx.Join(m.Path, "address"), 0, 0xFFFF)
	if !ok {
		return new(uint16) // reported; not "missing" too
	}
	a := uint16(v)
	return &a
}

// LoadProfile decodes and validates one profile. file names it in errors.
// All problems found are returned, joined; each is a *ProfileError.
func LoadProfile(file string, data []byte) (*Profile, error) {
	if len(data) > MaxProfileBytes {
		return nil, &ProfileError{File: file, Line: 1, Msg: fmt.Sprintf("file is %d bytes, want at most %d", len(data), MaxProfileBytes)}
	}
	l := &loader{Decoder: &yamlx.Decoder{File: file}}
	root, ok := l.Parse(data)
	if !ok {
		return nil, l.err()
	}
	if root == nil {
		return nil, &ProfileError{File: file, Line: 1, Msg: "file is empty, want a profile mapping"}
	}
	if line := secondDocument(data); line > 0 {
		return nil, &ProfileError{File: file, Line: line, Msg: "file holds more than one YAML document, want one profile"}
	}
	l.root = yamlx.Resolve(root)
	if l.root == nil || l.root.Kind != yaml.MappingNode {
		return nil, &ProfileError{File: file, Line: root.Line, Msg: "want a mapping with name, measurement, blocks and fields"}
	}
	pd := l.doc(l.root)
	if len(l.Errs) > 0 {
		return nil, l.err()
	}
	p := l.build(&pd)
	if err := l.err(); err != nil {
		return nil, err
	}
	return p, nil
}

// secondDocument returns the line where a second YAML document starts, or 0.
func secondDocument(data []byte) int {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var first, extra yaml.Node
	if dec.Decode(&first) != nil {
		return 0
	}
	err := dec.Decode(&extra)
	switch {
	case errors.Is(err, io.EOF):
		return 0
	case err == nil && extra.Line > 0:
		return extra.Line
	}
	return 1
}

// LoadProfileFile loads one profile file from fsys.
func LoadProfileFile(fsys fs.FS, name string) (*Profile, error) {
	data, err := fs.ReadFile(fsys, name)
	if err != nil {
		return nil, fmt.Errorf("modbus: profile %s: %w", name, err)
	}
	return LoadProfile(name, data)
}

// LoadProfiles loads every *.yaml and *.yml file at the top of fsys and
// returns the profiles by name. Two files defining the same name are an
// error. Problems of all files are returned, joined.
func LoadProfiles(fsys fs.FS) (map[string]*Profile, error) {
	var names []string
	for _, pat := range []string{"*.yaml", "*.yml"} {
		m, err := fs.Glob(fsys, pat)
		if err != nil {
			return nil, fmt.Errorf("modbus: listing profiles: %w", err)
		}
		names = append(names, m...)
	}
	sort.Strings(names)
	out := make(map[string]*Profile, len(names))
	var errs []error
	for _, n := range names {
		p, err := LoadProfileFile(fsys, n)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if prev, dup := out[p.Name]; dup {
			errs = append(errs, &ProfileError{File: n, Line: 1, Msg: fmt.Sprintf("profile name %q is already defined in %s", p.Name, prev.File)})
			continue
		}
		out[p.Name] = p
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

var functions = map[string]byte{
	"coil": FuncReadCoils, "discrete": FuncReadDiscreteInputs,
	"holding": FuncReadHoldingRegisters, "input": FuncReadInputRegisters,
}

var functionNames = map[byte]string{
	FuncReadCoils: "coil", FuncReadDiscreteInputs: "discrete",
	FuncReadHoldingRegisters: "holding", FuncReadInputRegisters: "input",
}

var types = map[string]Type{
	"bool": TypeBool, "uint16": TypeUint16, "int16": TypeInt16, "uint32": TypeUint32, "int32": TypeInt32,
	"float32": TypeFloat32, "uint64": TypeUint64, "int64": TypeInt64, "string": TypeString,
}

func (l *loader) build(d *profileDoc) *Profile {
	p := &Profile{Name: d.Name, Description: d.Description, Measurement: d.Measurement, File: l.File, byName: map[string]int{}}
	switch {
	case d.Name == "":
		l.errorf(l.topLine("name"), "missing name, want a profile name like ultrasonic-bay")
	case !payload.ValidDeviceID(d.Name):
		l.errorf(l.topLine("name"), "name %q is invalid, want [a-z0-9][a-z0-9_.-]{0,63}", d.Name)
	}
	switch {
	case d.Measurement == "":
		l.errorf(l.topLine("measurement"), "missing measurement, want an InfluxDB measurement name like parking_bay")
	case !payload.ValidName(d.Measurement):
		l.errorf(l.topLine("measurement"), "measurement %q is not a valid measurement name", d.Measurement)
	}
	if len(d.Blocks) == 0 {
		l.errorf(l.topLine("blocks"), "no blocks, want at least one read block (function, address, count)")
	}
	if len(d.Fields) == 0 {
		l.errorf(l.topLine("fields"), "no fields, want at least one field")
	}
	blockIdx := map[string]int{}
	for i := range d.Blocks {
		l.buildBlock(p, i, &d.Blocks[i], len(d.Blocks), blockIdx)
	}
	l.checkBlockOverlap(p)
	for i := range d.Fields {
		l.buildField(p, i, &d.Fields[i], blockIdx)
	}
	l.checkFieldOverlap(p)
	return p
}

func (l *loader) buildBlock(p *Profile, i int, d *blockDoc, nblocks int, idx map[string]int) {
	n := l.item("blocks", i)
	b := Block{Name: d.Name}
	ok := true
	if b.Name == "" && nblocks > 1 {
		l.errorf(l.line(n, "name"), "block %d: missing name, want a name when a profile has several blocks", i+1)
		ok = false
	} else if b.Name != "" {
		if _, dup := idx[b.Name]; dup {
			l.errorf(l.line(n, "name"), "block %q is defined twice", b.Name)
			ok = false
		}
	}
	label := fmt.Sprintf("block %d", i+1)
	if b.Name != "" {
		label = fmt.Sprintf("block %q", b.Name)
	}
	fc, known := functions[d.Function]
	if !known {
		l.errorf(l.line(n, "function"), "%s: function %q is unknown, want holding, input, coil or discrete", label, d.Function)
		ok = false
	}
	b.Function = fc
	if d.Address == nil {
		l.errorf(l.line(n, "address"), "%s: missing address, want the first register address (0..65535)", label)
		ok = false
	} else {
		b.Address = *d.Address
	}
	if known {
		max := readMax(fc)
		if d.Count < 1 || d.Count > max {
			l.errorf(l.line(n, "count"), "%s: count %d is out of range, want 1..%d for %s", label, d.Count, max, d.Function)
			ok = false
		} else if int(b.Address)+d.Count > 0x10000 {
			l.errorf(l.line(n, "count"), "%s: addresses %d..%d run past 65535", label, b.Address, int(b.Address)+d.Count-1)
			ok = false
		}
	}
	b.Count = uint16(d.Count)
	if !ok {
		b.Count = 0 // keeps fields from matching a broken block
	}
	idx[b.Name] = len(p.Blocks)
	p.Blocks = append(p.Blocks, b)
}

func (l *loader) checkBlockOverlap(p *Profile) {
	for i := range p.Blocks {
		a := &p.Blocks[i]
		for j := 0; j < i; j++ {
			b := &p.Blocks[j]
			if a.Count == 0 || b.Count == 0 || a.Function != b.Function {
				continue
			}
			if int(a.Address) < int(b.Address)+int(b.Count) && int(b.Address) < int(a.Address)+int(a.Count) {
				l.errorf(l.line(l.item("blocks", i), "address"), "block %d (%s %d..%d) overlaps block %d (%s %d..%d)",
					i+1, functionNames[a.Function], a.Address, int(a.Address)+int(a.Count)-1,
					j+1, functionNames[b.Function], b.Address, int(b.Address)+int(b.Count)-1)
			}
		}
	}
}

func (l *loader) buildField(p *Profile, i int, d *fieldDoc, blockIdx map[string]int) {
	n := l.item("fields", i)
	f := &Field{Name: d.Name, Description: d.Description, Bit: -1, Scale: 1, Min: math.NaN(), Max: math.NaN(), Line: l.line(n, "name")}
	label := fmt.Sprintf("field %d", i+1)
	switch {
	case d.Name == "":
		l.errorf(f.Line, "field %d: missing name", i+1)
		return
	case !payload.ValidName(d.Name):
		l.errorf(f.Line, "field %q: name is not a valid InfluxDB field name", d.Name)
		return
	}
	label = fmt.Sprintf("field %q", d.Name)
	if _, dup := p.byName[d.Name]; dup {
		l.errorf(f.Line, "%s is defined twice (first at line %d)", label, p.Fields[p.byName[d.Name]].Line)
		return
	}
	errs := len(l.Errs)
	// Block.
	switch {
	case d.Block == "" && len(p.Blocks) == 1:
		f.Block = 0
	case d.Block == "":
		l.errorf(f.Line, "%s: missing block, want one of %s", label, blockNames(p))
		return
	default:
		bi, ok := blockIdx[d.Block]
		if !ok {
			l.errorf(l.line(n, "block"), "%s: block %q is not defined, want one of %s", label, d.Block, blockNames(p))
			return
		}
		f.Block = bi
	}
	if len(p.Blocks) == 0 {
		return
	}
	blk := &p.Blocks[f.Block]
	// Type.
	t, ok := types[d.Type]
	if !ok {
		if d.Type == "" {
			l.errorf(l.line(n, "type"), "%s: missing type, want bool, uint16, int16, uint32, int32, float32, uint64, int64 or string", label)
		} else {
			l.errorf(l.line(n, "type"), "%s: type %q is unknown, want bool, uint16, int16, uint32, int32, float32, uint64, int64 or string", label, d.Type)
		}
		return
	}
	f.Type = t
	if blk.Bits() && t != TypeBool {
		l.errorf(l.line(n, "type"), "%s: type %s cannot be read from a %s block, want bool", label, t, functionNames[blk.Function])
	}
	b := &fieldBuild{loader: l, d: d, n: n, label: label, f: f, blk: blk}
	b.layout()
	b.value()
	b.writing()
	// The InfluxDB contract.
	if m, ok := payload.Schema[p.Measurement]; ok && f.Publish && f.Output != payload.TypeInvalid {
		if want, ok := m.Fields[f.Name]; ok && want != f.Output {
			l.errorf(f.Line, "%s: decodes as %s, the InfluxDB contract for %s says %s", label, f.Output, p.Measurement, want)
		}
	}
	if len(l.Errs) > errs {
		return
	}
	p.byName[f.Name] = len(p.Fields)
	blk.fields = append(blk.fields, len(p.Fields))
	if f.Publish {
		blk.published = append(blk.published, len(p.Fields))
	}
	p.Fields = append(p.Fields, *f)
}

// fieldBuild is one field being built, its parts checked in turn: where
// it lies (layout), how its raw value becomes the published one (value),
// and whether and how it may be written (writing).
type fieldBuild struct {
	*loader
	d     *fieldDoc
	n     *yaml.Node
	label string
	f     *Field
	blk   *Block
}

func (b *fieldBuild) numeric() bool { return b.f.Type.integer() || b.f.Type == TypeFloat32 }

// layout checks the bit, length, address and word and byte orders.
func (b *fieldBuild) layout() {
	l, d, f, n, label, blk, t := b.loader, b.d, b.f, b.n, b.label, b.blk, b.f.Type
	// Bit and length.
	if d.Bit != nil {
		switch {
		case t != TypeBool:
			l.errorf(l.line(n, "bit"), "%s: bit is only for bool fields", label)
		case blk.Bits():
			l.errorf(l.line(n, "bit"), "%s: bit is only for bools taken from a register, not from a %s block", label, functionNames[blk.Function])
		case *d.Bit < 0 || *d.Bit > 15:
			l.errorf(l.line(n, "bit"), "%s: bit %d is out of range, want 0..15", label, *d.Bit)
		default:
			f.Bit = *d.Bit
		}
	} else if t == TypeBool && !blk.Bits() {
		l.errorf(l.line(n, "type"), "%s: a bool from a register needs bit (0..15)", label)
	}
	if t == TypeString {
		if d.Length < 1 || d.Length > MaxReadRegisters {
			l.errorf(l.line(n, "length"), "%s: length %d is out of range, want 1..%d registers", label, d.Length, MaxReadRegisters)
		}
		f.Length = d.Length
	} else if d.Length != 0 {
		l.errorf(l.line(n, "length"), "%s: length is only for string fields", label)
	}
	// Address.
	if d.Address == nil {
		l.errorf(f.Line, "%s: missing address", label)
	} else {
		f.Address = *d.Address
		end := int(f.Address) + f.size() - 1
		if blk.Count > 0 && f.size() > 0 && (f.Address < blk.Address || end >= int(blk.Address)+int(blk.Count)) {
			span := fmt.Sprintf("address %d lies", f.Address)
			if end > int(f.Address) {
				span = fmt.Sprintf("addresses %d..%d lie", f.Address, end)
			}
			bl := fmt.Sprintf("block %d", f.Block+1)
			if blk.Name != "" {
				bl = fmt.Sprintf("block %q", blk.Name)
			}
			l.errorf(l.line(n, "address"), "%s: %s outside %s (%d..%d)", label, span, bl, blk.Address, int(blk.Address)+int(blk.Count)-1)
		}
	}
	// Orders.
	f.WordOrder = l.order(n, "word_order", label, d.WordOrder)
	f.ByteOrder = l.order(n, "byte_order", label, d.ByteOrder)
	if d.WordOrder != "" && t.registers() < 2 {
		l.errorf(l.line(n, "word_order"), "%s: word_order is only for 32- and 64-bit types", label)
	}
	if d.ByteOrder != "" && blk.Bits() {
		l.errorf(l.line(n, "byte_order"), "%s: byte_order is only for register fields", label)
	}
}

// value checks the enum values, the not-implemented sentinel, scale, offset and output type.
func (b *fieldBuild) value() {
	l, d, f, n, label, t, numeric := b.loader, b.d, b.f, b.n, b.label, b.f.Type, b.numeric()
	// Values (enum).
	if d.Values != nil {
		if !t.integer() {
			l.errorf(l.line(n, "values"), "%s: values are only for integer types, not %s", label, t)
		} else {
			f.Values, f.Output = l.enum(d.Values, label, t)
		}
	}
	// Sentinel.
	if d.NotImplemented != nil {
		if !numeric {
			l.errorf(l.line(n, "not_implemented"), "%s: not_implemented is only for numeric types, not %s", label, t)
		} else if raw, ok := l.sentinel(d.NotImplemented, label, t); ok {
			f.NotImplemented, f.HasNotImplemented = raw, true
		}
	}
	// Scale, offset, output.
	if d.Scale != nil || d.Offset != nil {
		switch {
		case !numeric || f.Values != nil:
			l.errorf(l.line(n, "scale"), "%s: scale and offset are only for numeric fields without values", label)
		case d.Scale != nil && (*d.Scale == 0 || math.IsNaN(*d.Scale) || math.IsInf(*d.Scale, 0)):
			l.errorf(l.line(n, "scale"), "%s: scale %v is invalid, want a finite non-zero number", label, *d.Scale)
		case d.Offset != nil && (math.IsNaN(*d.Offset) || math.IsInf(*d.Offset, 0)):
			l.errorf(l.line(n, "offset"), "%s: offset %v is invalid, want a finite number", label, *d.Offset)
		default:
			if d.Scale != nil {
				f.Scale = *d.Scale
			}
			if d.Offset != nil {
				f.Offset = *d.Offset
			}
		}
	}
	if inv := 1 / f.Scale; f.Scale != 1 && math.Abs(inv-math.Round(inv)) < 1e-9*math.Abs(inv) {
		f.div = math.Round(inv)
	}
	switch {
	case t == TypeBool:
		f.Output = payload.TypeBool
	case t == TypeString:
		f.Output = payload.TypeString
	case f.Values != nil:
		// set by enum
	default:
		f.Output = payload.TypeFloat
	}
	switch d.Output {
	case "":
	case "float":
		if !numeric || f.Values != nil {
			l.errorf(l.line(n, "output"), "%s: output is only for numeric fields without values", label)
		}
	case "int":
		switch {
		case !t.integer() || f.Values != nil:
			l.errorf(l.line(n, "output"), "%s: output int is only for integer fields without values", label)
		case t == TypeUint64:
			l.errorf(l.line(n, "output"), "%s: output int is not available for uint64 (values above 2^63-1 do not fit), want float", label)
		case f.Scale != 1 || f.Offset != 0:
			l.errorf(l.line(n, "output"), "%s: output int cannot have scale or offset", label)
		default:
			f.Output = payload.TypeInt
		}
	default:
		l.errorf(l.line(n, "output"), "%s: output %q is unknown, want float or int", label, d.Output)
	}
}

// writing checks publish, writable and the write limits.
func (b *fieldBuild) writing() {
	l, d, f, n, label, blk, t, numeric := b.loader, b.d, b.f, b.n, b.label, b.blk, b.f.Type, b.numeric()
	// Publishing and writing.
	f.Publish = d.Publish == nil || *d.Publish
	f.Writable = d.Writable
	if f.Writable {
		switch {
		case blk.Function != FuncReadHoldingRegisters && blk.Function != FuncReadCoils:
			l.errorf(l.line(n, "writable"), "%s: only fields of holding or coil blocks can be writable, not of %s blocks", label, functionNames[blk.Function])
		case f.Bit >= 0:
			l.errorf(l.line(n, "writable"), "%s: a bit of a register cannot be writable", label)
		case t == TypeString:
			l.errorf(l.line(n, "writable"), "%s: string fields cannot be writable", label)
		}
		if f.Values != nil {
			seen := map[payload.Value]int64{}
			for _, k := range sortedKeys(f.Values) {
				e := f.Values[k]
				if e.Absent {
					continue
				}
				if prev, dup := seen[e.Value]; dup {
					l.errorf(l.line(n, "values"), "%s: writable enum maps both %d and %d to %v, want one raw value per value", label, prev, k, e.Value)
					break
				}
				seen[e.Value] = k
			}
		}
	}
	for _, lim := range []struct {
		key string
		v   *float64
		dst *float64
	}{{"min", d.Min, &f.Min}, {"max", d.Max, &f.Max}} {
		if lim.v == nil {
			continue
		}
		switch {
		case !numeric || f.Values != nil:
			l.errorf(l.line(n, lim.key), "%s: %s is only for numeric fields (not bool, string or enum)", label, lim.key)
		case math.IsNaN(*lim.v) || math.IsInf(*lim.v, 0):
			l.errorf(l.line(n, lim.key), "%s: %s %v is invalid, want a finite number", label, lim.key, *lim.v)
		default:
			*lim.dst = *lim.v
		}
	}
	if f.Min > f.Max {
		l.errorf(l.line(n, "min"), "%s: min %v is above max %v", label, f.Min, f.Max)
	}
}

func blockNames(p *Profile) string {
	var s []string
	for _, b := range p.Blocks {
		if b.Name != "" {
			s = append(s, strconv.Quote(b.Name))
		}
	}
	if len(s) == 0 {
		return "the named blocks"
	}
	return strings.Join(s, ", ")
}

func (l *loader) order(n *yaml.Node, key, label, v string) Order {
	switch v {
	case "", "big":
		return BigEndian
	case "little":
		return LittleEndian
	}
	l.errorf(l.line(n, key), "%s: %s %q is unknown, want big or little", label, key, v)
	return BigEndian
}

// intRange is the raw range of an integer type.
func intRange(t Type) (lo int64, hi uint64) {
	b := t.bits()
	if t.signed() {
		return -1 << (b - 1), 1<<(b-1) - 1
	}
	if b == 64 {
		return 0, math.MaxUint64
	}
	return 0, 1<<b - 1
}

// parseInt parses a YAML integer scalar (decimal, 0x hex, 0o octal, 0b
// binary). neg reports a negative value, returned as its magnitude.
func parseInt(n *yaml.Node) (mag uint64, neg bool, ok bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		return 0, false, false
	}
	s := strings.ReplaceAll(n.Value, "_", "")
	if strings.HasPrefix(s, "-") {
		neg, s = true, s[1:]
	} else {
		s = strings.TrimPrefix(s, "+")
	}
	u, err := strconv.ParseUint(s, 0, 64)
	if err != nil {
		return 0, false, false
	}
	return u, neg, true
}

// rawInt checks that an integer scalar fits type t and returns it as the
// key an enum lookup uses (sign-extended for signed types; the raw
// contents for unsigned ones). A negative value for an unsigned type, or a
// positive one above a signed type's maximum, is accepted as raw bits
// only when explicitly written in hex (0x8000 for int16).
func rawInt(n *yaml.Node, t Type) (key int64, raw uint64, ok bool) {
	mag, neg, ok := parseInt(n)
	if !ok {
		return 0, 0, false
	}
	lo, hi := intRange(t)
	bits := t.bits()
	mask := uint64(math.MaxUint64)
	if bits < 64 {
		mask = 1<<bits - 1
	}
	hexish := strings.HasPrefix(strings.ToLower(strings.TrimLeft(n.Value, "+-")), "0x")
	switch {
	case neg:
		if !t.signed() || mag > uint64(-lo) {
			return 0, 0, false
		}
		key = -int64(mag)
		return key, uint64(key) & mask, true
	case mag <= hi:
		return int64(mag), mag, true
	case t.signed() && hexish && mag <= mask:
		shift := 64 - bits
		key = int64(mag<<shift) >> shift
		return key, mag, true
	}
	return 0, 0, false
}

func (l *loader) sentinel(n *yaml.Node, label string, t Type) (uint64, bool) {
	if t == TypeFloat32 {
		mag, neg, ok := parseInt(n)
		if !ok || neg || mag > math.MaxUint32 {
			l.errorf(n.Line, "%s: not_implemented %q is invalid, want the raw 32-bit pattern as an integer (0x7FC00000)", label, n.Value)
			return 0, false
		}
		return mag, true
	}
	_, raw, ok := rawInt(n, t)
	if !ok {
		lo, hi := intRange(t)
		l.errorf(n.Line, "%s: not_implemented %q is invalid, want an integer in %d..%d for %s", label, n.Value, lo, hi, t)
		return 0, false
	}
	return raw, true
}

func (l *loader) enum(n *yaml.Node, label string, t Type) (map[int64]EnumValue, payload.ValueType) {
	if n.Kind != yaml.MappingNode {
		l.errorf(n.Line, "%s: values must be a mapping from raw integers to bool, string or null", label)
		return nil, payload.TypeInvalid
	}
	out := make(map[int64]EnumValue, len(n.Content)/2)
	var typ payload.ValueType
	typLine := 0
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		key, _, ok := rawInt(k, t)
		if !ok {
			lo, hi := intRange(t)
			l.errorf(k.Line, "%s: values key %q is invalid, want an integer in %d..%d for %s", label, k.Value, lo, hi, t)
			continue
		}
		if _, dup := out[key]; dup {
			l.errorf(k.Line, "%s: values key %d is given twice", label, key)
			continue
		}
		var e EnumValue
		switch v.ShortTag() {
		case "!!null":
			e.Absent = true
		case "!!bool":
			b, _ := strconv.ParseBool(v.Value)
			e.Value = payload.Bool(b)
		case "!!str":
			if v.Value == "" {
				l.errorf(v.Line, "%s: values %d is an empty string", label, key)
				continue
			}
			e.Value = payload.String(v.Value)
		default:
			l.errorf(v.Line, "%s: values %d is %q, want true, false, a string or null", label, key, v.Value)
			continue
		}
		if !e.Absent {
			if typ == payload.TypeInvalid {
				typ, typLine = e.Value.Type(), v.Line
			} else if e.Value.Type() != typ {
				l.errorf(v.Line, "%s: values %d is a %s, but line %d gives a %s; want all of one type", label, key, e.Value.Type(), typLine, typ)
				continue
			}
		}
		out[key] = e
	}
	if typ == payload.TypeInvalid && len(out) > 0 {
		l.errorf(n.Line, "%s: values maps everything to null, want at least one bool or string", label)
	}
	if len(n.Content) == 0 {
		l.errorf(n.Line, "%s: values is empty", label)
	}
	return out, typ
}

func sortedKeys(m map[int64]EnumValue) []int64 {
	keys := make([]int64, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	return keys
}

// checkFieldOverlap rejects fields that share registers, except views of
// one register by single-register fields (bits, enums), and rejects the
// same bit used twice.
func (l *loader) checkFieldOverlap(p *Profile) {
	type use struct {
		field int
		multi bool
	}
	for bi := range p.Blocks {
		regs := map[int]use{}
		bitsUsed := map[[2]int]int{}
		for _, fi := range p.Blocks[bi].fields {
			f := &p.Fields[fi]
			multi := f.size() > 1
			if f.Bit >= 0 {
				k := [2]int{int(f.Address), f.Bit}
				if prev, dup := bitsUsed[k]; dup {
					l.errorf(f.Line, "field %q: bit %d of address %d is already field %q", f.Name, f.Bit, f.Address, p.Fields[prev].Name)
					continue
				}
				bitsUsed[k] = fi
			}
			for a := int(f.Address); a < int(f.Address)+f.size(); a++ {
				prev, used := regs[a]
				if used && (multi || prev.multi) {
					l.errorf(f.Line, "field %q: address %d overlaps field %q", f.Name, a, p.Fields[prev.field].Name)
					break
				}
				if !used {
					regs[a] = use{fi, multi}
				}
			}
		}
	}
}
