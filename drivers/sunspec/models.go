package sunspec

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"sync"
)

// The SunSpec Alliance model definitions (Apache-2.0, see models/LICENSE)
// are the only source of offsets, types, scale-factor references, access
// and symbols: the point tables are built from them at load.
//
//go:embed models/*.json models/LICENSE
var modelFS embed.FS

// Point types of the SunSpec information model.
const (
	TypeInt16      = "int16"
	TypeUint16     = "uint16"
	TypeCount      = "count"
	TypeAcc16      = "acc16"
	TypeEnum16     = "enum16"
	TypeBitfield16 = "bitfield16"
	TypePad        = "pad"
	TypeInt32      = "int32"
	TypeUint32     = "uint32"
	TypeAcc32      = "acc32"
	TypeEnum32     = "enum32"
	TypeBitfield32 = "bitfield32"
	TypeInt64      = "int64"
	TypeUint64     = "uint64"
	TypeAcc64      = "acc64"
	TypeFloat32    = "float32"
	TypeFloat64    = "float64"
	TypeString     = "string"
	TypeSunssf     = "sunssf"
)

// typeSize is the register count of each fixed-size type (strings take
// their size from the definition).
var typeSize = map[string]int{
	TypeInt16: 1, TypeUint16: 1, TypeCount: 1, TypeAcc16: 1, TypeEnum16: 1,
	TypeBitfield16: 1, TypePad: 1, TypeSunssf: 1,
	TypeInt32: 2, TypeUint32: 2, TypeAcc32: 2, TypeEnum32: 2, TypeBitfield32: 2, TypeFloat32: 2,
	TypeInt64: 4, TypeUint64: 4, TypeAcc64: 4, TypeFloat64: 4,
}

// Symbol is a named value of an enum or a named bit of a bitfield.
type Symbol struct {
	Name  string
	Value int64
}

// Point is one point of a model: its place (Offset registers from the
// model's ID register, or from the start of its repeating group), size in
// registers, type, the point holding its scale factor, and whether a
// master may write it.
type Point struct {
	Name     string
	Label    string
	Type     string
	Size     int
	Offset   int
	SF       string // name of the sunssf point, or ""
	Units    string
	Writable bool // access "RW"
	Symbols  []Symbol
}

// Symbol names value (an enum value, or a bit number of a bitfield), ""
// when the definition names none.
func (p *Point) Symbol(value int64) string {
	for _, s := range p.Symbols {
		if s.Value == value {
			return s.Name
		}
	}
	return ""
}

// SymbolValue returns the value of the symbol called name (any case).
func (p *Point) SymbolValue(name string) (int64, bool) {
	for _, s := range p.Symbols {
		if strings.EqualFold(s.Name, name) {
			return s.Value, true
		}
	}
	return 0, false
}

// Group is a model's repeating block (the modules of model 160).
type Group struct {
	Name   string
	Len    int // registers per repetition
	Points []Point
	index  map[string]int
}

// Point returns the group's point called name.
func (g *Group) Point(name string) (*Point, bool) {
	i, ok := g.index[name]
	if !ok {
		return nil, false
	}
	return &g.Points[i], true
}

// ModelDef is the definition of one SunSpec model: its fixed points (ID and
// L included, at offsets 0 and 1) and its repeating group, if any.
type ModelDef struct {
	ID       uint16
	Name     string // e.g. "inverter_three_phase"
	Label    string // e.g. "Inverter (Three Phase)"
	FixedLen int    // registers of the fixed block, ID and L included
	Points   []Point
	Group    *Group // nil when the model has no repeating block
	index    map[string]int
}

// Point returns the fixed point called name.
func (d *ModelDef) Point(name string) (*Point, bool) {
	i, ok := d.index[name]
	if !ok {
		return nil, false
	}
	return &d.Points[i], true
}

// Repeats returns how many repetitions of the group a model of length L
// (the L register: registers after ID and L) holds, or an error when L does
// not fit the definition.
func (d *ModelDef) Repeats(l int) (int, error) {
	total := l + 2
	if total < d.FixedLen {
		return 0, fmt.Errorf("model %d (%s): length %d, want at least %d", d.ID, d.Name, l, d.FixedLen-2)
	}
	if d.Group == nil {
		return 0, nil
	}
	rest := total - d.FixedLen
	if rest%d.Group.Len != 0 {
		return 0, fmt.Errorf("model %d (%s): length %d leaves %d registers after the fixed block, not a multiple of the %d-register %s group", d.ID, d.Name, l, rest, d.Group.Len, d.Group.Name)
	}
	return rest / d.Group.Len, nil
}

// jsonPoint and jsonGroup mirror the SunSpec JSON model format.
type jsonPoint struct {
	Name    string `json:"name"`
	Label   string `json:"label"`
	Type    string `json:"type"`
	Size    int    `json:"size"`
	SF      any    `json:"sf"`
	Units   string `json:"units"`
	Access  string `json:"access"`
	Symbols []struct {
		Name  string `json:"name"`
		Value int64  `json:"value"`
	} `json:"symbols"`
}

type jsonGroup struct {
	Name   string      `json:"name"`
	Label  string      `json:"label"`
	Points []jsonPoint `json:"points"`
	Groups []jsonGroup `json:"groups"`
}

type jsonModel struct {
	ID    int       `json:"id"`
	Group jsonGroup `json:"group"`
}

func buildPoints(file string, jps []jsonPoint) ([]Point, map[string]int, int, error) {
	pts := make([]Point, 0, len(jps))
	idx := make(map[string]int, len(jps))
	off := 0
	for _, jp := range jps {
		size, fixed := typeSize[jp.Type]
		switch {
		case jp.Type == TypeString:
			if jp.Size < 1 {
				return nil, nil, 0, fmt.Errorf("%s: point %s: string of size %d", file, jp.Name, jp.Size)
			}
			size = jp.Size
		case !fixed:
			return nil, nil, 0, fmt.Errorf("%s: point %s: unknown type %q", file, jp.Name, jp.Type)
		case jp.Size != size:
			return nil, nil, 0, fmt.Errorf("%s: point %s: %s of size %d, want %d", file, jp.Name, jp.Type, jp.Size, size)
		}
		p := Point{Name: jp.Name, Label: jp.Label, Type: jp.Type, Size: size, Offset: off,
			Units: jp.Units, Writable: jp.Access == "RW"}
		switch sf := jp.SF.(type) {
		case nil:
		case string:
			p.SF = sf
		default:
			return nil, nil, 0, fmt.Errorf("%s: point %s: fixed scale factor %v is not supported", file, jp.Name, sf)
		}
		for _, s := range jp.Symbols {
			p.Symbols = append(p.Symbols, Symbol{Name: s.Name, Value: s.Value})
		}
		if _, dup := idx[p.Name]; dup {
			return nil, nil, 0, fmt.Errorf("%s: point %s defined twice", file, p.Name)
		}
		idx[p.Name] = len(pts)
		pts = append(pts, p)
		off += size
	}
	return pts, idx, off, nil
}

func parseModel(file string, data []byte) (*ModelDef, error) {
	var jm jsonModel
	if err := json.Unmarshal(data, &jm); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if jm.ID < 1 || jm.ID >= 0xFFFF {
		return nil, fmt.Errorf("%s: model id %d, want 1..65534", file, jm.ID)
	}
	pts, idx, n, err := buildPoints(file, jm.Group.Points)
	if err != nil {
		return nil, err
	}
	if len(pts) < 2 || pts[0].Name != "ID" || pts[1].Name != "L" {
		return nil, fmt.Errorf("%s: a model starts with points ID and L", file)
	}
	d := &ModelDef{ID: uint16(jm.ID), Name: jm.Group.Name, Label: jm.Group.Label, FixedLen: n, Points: pts, index: idx}
	for _, p := range pts {
		if p.SF != "" {
			if sp, ok := d.Point(p.SF); !ok || sp.Type != TypeSunssf {
				return nil, fmt.Errorf("%s: point %s: scale factor %s is not a sunssf point of the model", file, p.Name, p.SF)
			}
		}
	}
	switch len(jm.Group.Groups) {
	case 0:
	case 1:
		jg := jm.Group.Groups[0]
		if len(jg.Groups) > 0 {
			return nil, fmt.Errorf("%s: nested groups in %s are not supported", file, jg.Name)
		}
		gp, gidx, gn, err := buildPoints(file, jg.Points)
		if err != nil {
			return nil, err
		}
		if gn == 0 {
			return nil, fmt.Errorf("%s: group %s has no points", file, jg.Name)
		}
		for _, p := range gp {
			if p.SF != "" {
				if sp, ok := d.Point(p.SF); !ok || sp.Type != TypeSunssf {
					return nil, fmt.Errorf("%s: group %s point %s: scale factor %s is not a sunssf point of the model", file, jg.Name, p.Name, p.SF)
				}
			}
		}
		d.Group = &Group{Name: jg.Name, Len: gn, Points: gp, index: gidx}
	default:
		return nil, fmt.Errorf("%s: %d repeating groups; only one is supported", file, len(jm.Group.Groups))
	}
	return d, nil
}

// loadModels parses every embedded definition.
func loadModels(fsys fs.FS) (map[uint16]*ModelDef, error) {
	files, err := fs.Glob(fsys, "models/model_*.json")
	if err != nil {
		return nil, err
	}
	out := make(map[uint16]*ModelDef, len(files))
	for _, f := range files {
		data, err := fs.ReadFile(fsys, f)
		if err != nil {
			return nil, err
		}
		d, err := parseModel(f, data)
		if err != nil {
			return nil, fmt.Errorf("sunspec: %w", err)
		}
		if _, dup := out[d.ID]; dup {
			return nil, fmt.Errorf("sunspec: %s: model %d defined twice", f, d.ID)
		}
		out[d.ID] = d
	}
	return out, nil
}

// definitions is the parsed embedded set, built once; it is never changed
// after loading.
var definitions = sync.OnceValues(func() (map[uint16]*ModelDef, error) {
	return loadModels(modelFS)
})

// Definition returns the embedded definition of model id.
func Definition(id uint16) (*ModelDef, bool) {
	defs, err := definitions()
	if err != nil {
		return nil, false
	}
	d, ok := defs[id]
	return d, ok
}

// Definitions lists the IDs of the embedded model definitions, sorted. It
// fails only when the embedded files are broken (a test checks they are not).
func Definitions() ([]uint16, error) {
	defs, err := definitions()
	if err != nil {
		return nil, err
	}
	ids := make([]uint16, 0, len(defs))
	for id := range defs {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids, nil
}
