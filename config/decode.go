package config

import (
	"fmt"
	"reflect"
	"strings"
	"time"
)

// Error is one problem in a config file, located to the key that has it.
type Error struct {
	File string
	Pos  Pos
	Path string // key path such as service[1].backend[0].weight
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(":")
	}
	if e.Pos.Line > 0 {
		fmt.Fprintf(&b, "%d:%d:", e.Pos.Line, e.Pos.Col)
	}
	if b.Len() > 0 {
		b.WriteString(" ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one file, in file order.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Duration is a time.Duration written as a Go duration string ("1s", "500ms").
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// ParseDuration reads a Duration as written in lb.toml: a Go duration
// string ("500ms", "2s", "1h"), never negative.
func ParseDuration(s string) (Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("bad duration %q; expected a non-negative duration such as \"500ms\", \"2s\" or \"1h\"", s)
	}
	return Duration(d), nil
}

// decoder fills tagged structs from the positioned tree, recording every
// mismatch instead of stopping at the first. Key paths are built only for
// an error: a config of 10,000 services has about 400,000 of them, and
// rendering and keeping each one was most of the decoder's time and memory.
// The validator finds positions in the tree itself (validator.at).
type decoder struct {
	errs   Errors
	fields map[reflect.Type]*structFields
	// path is where the decoder is, pushed and popped as it descends: a
	// stack rather than a chain of nodes, so descending allocates nothing.
	path []pathElem
}

// structFields is the toml tags of one struct type, computed once per type
// rather than once per table.
type structFields struct {
	index map[string]int
	names string // for "unknown key; expected one of: ..."
}

// pathElem is one step of a key path: a key, or an array index when key
// is "". The path is rendered only when an error needs it
// (service[3].backend[1].weight).
type pathElem struct {
	key string
	idx int
}

func (d *decoder) pathString() string {
	var b strings.Builder
	for _, e := range d.path {
		if e.key == "" {
			fmt.Fprintf(&b, "[%d]", e.idx)
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(e.key)
	}
	return b.String()
}

func (d *decoder) errorf(p Pos, format string, args ...any) {
	d.errs = append(d.errs, &Error{Pos: p, Path: d.pathString(), Msg: fmt.Sprintf(format, args...)})
}

var durationType = reflect.TypeOf(Duration(0))

// customDecoder is implemented by value types that accept several TOML forms.
type customDecoder interface {
	decodeTOML(v *value) error
}

func (d *decoder) structFields(rt reflect.Type) *structFields {
	if f, ok := d.fields[rt]; ok {
		return f
	}
	f := &structFields{index: map[string]int{}}
	var names []string
	for i := 0; i < rt.NumField(); i++ {
		tag := rt.Field(i).Tag.Get("toml")
		if tag == "" || tag == "-" {
			continue
		}
		f.index[tag] = i
		names = append(names, tag)
	}
	f.names = strings.Join(names, ", ")
	if d.fields == nil {
		d.fields = map[reflect.Type]*structFields{}
	}
	d.fields[rt] = f
	return f
}

func (d *decoder) decodeStruct(t *table, rv reflect.Value) {
	fields := d.structFields(rv.Type())
	for _, e := range t.entries {
		d.path = append(d.path, pathElem{key: e.key})
		if i, ok := fields.index[e.key]; ok {
			d.decodeValue(e.val, rv.Field(i))
		} else {
			d.errorf(e.keyPos, "unknown key; expected one of: %s", fields.names)
		}
		d.path = d.path[:len(d.path)-1]
	}
}

func (d *decoder) decodeValue(v *value, fv reflect.Value) {
	if fv.Kind() == reflect.Pointer {
		nv := reflect.New(fv.Type().Elem())
		d.decodeValue(v, nv.Elem())
		fv.Set(nv)
		return
	}
	if cd, ok := fv.Addr().Interface().(customDecoder); ok {
		if err := cd.decodeTOML(v); err != nil {
			d.errorf(v.pos, "%v", err)
		}
		return
	}
	if fv.Type() == durationType {
		if v.kind != kindString {
			d.errorf(v.pos, "expected a duration string such as \"500ms\", \"2s\" or \"1h\", got %s", v.kind)
			return
		}
		dur, err := ParseDuration(v.s)
		if err != nil {
			d.errorf(v.pos, "%v", err)
			return
		}
		fv.SetInt(int64(dur))
		return
	}
	switch fv.Kind() {
	case reflect.String:
		if v.kind != kindString {
			d.errorf(v.pos, "expected a string, got %s", v.kind)
			return
		}
		fv.SetString(v.s)
	case reflect.Int, reflect.Int64, reflect.Uint32:
		if v.kind != kindInt {
			d.errorf(v.pos, "expected an integer, got %s", v.kind)
			return
		}
		if fv.Kind() == reflect.Uint32 {
			if v.i < 0 || v.i > 1<<32-1 {
				d.errorf(v.pos, "%d out of range; expected 0 to 4294967295", v.i)
				return
			}
			fv.SetUint(uint64(v.i))
			return
		}
		fv.SetInt(v.i)
	case reflect.Bool:
		if v.kind != kindBool {
			d.errorf(v.pos, "expected true or false, got %s", v.kind)
			return
		}
		fv.SetBool(v.b)
	case reflect.Slice:
		if v.kind != kindArray {
			d.errorf(v.pos, "expected an array, got %s", v.kind)
			return
		}
		s := reflect.MakeSlice(fv.Type(), len(v.arr), len(v.arr))
		for i, e := range v.arr {
			d.path = append(d.path, pathElem{idx: i})
			d.decodeValue(e, s.Index(i))
			d.path = d.path[:len(d.path)-1]
		}
		fv.Set(s)
	case reflect.Struct:
		if v.kind != kindTable {
			d.errorf(v.pos, "expected a table, got %s", v.kind)
			return
		}
		d.decodeStruct(v.tbl, fv)
	default:
		panic(fmt.Sprintf("config: unsupported field kind %s at %s", fv.Kind(), d.pathString()))
	}
}
