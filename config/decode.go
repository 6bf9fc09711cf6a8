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
// mismatch instead of stopping at the first.
type decoder struct {
	errs Errors
	// seen records where each decoded key path was written, for the
	// validation pass to point at.
	seen map[string]Pos
}

func (d *decoder) errorf(p Pos, path, format string, args ...any) {
	d.errs = append(d.errs, &Error{Pos: p, Path: path, Msg: fmt.Sprintf(format, args...)})
}

var durationType = reflect.TypeOf(Duration(0))

// customDecoder is implemented by value types that accept several TOML forms.
type customDecoder interface {
	decodeTOML(v *value) error
}

func (d *decoder) decodeStruct(t *table, rv reflect.Value, path string) {
	fields := map[string]int{}
	var names []string
	rt := rv.Type()
	for i := 0; i < rt.NumField(); i++ {
		tag := rt.Field(i).Tag.Get("toml")
		if tag == "" || tag == "-" {
			continue
		}
		fields[tag] = i
		names = append(names, tag)
	}
	for _, k := range t.keys {
		v := t.vals[k]
		sub := joinPath(path, k)
		i, ok := fields[k]
		if !ok {
			d.errorf(t.keyPos[k], sub, "unknown key; expected one of: %s", strings.Join(names, ", "))
			continue
		}
		d.seen[sub] = v.pos
		d.decodeValue(v, rv.Field(i), sub)
	}
}

func joinPath(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

func (d *decoder) decodeValue(v *value, fv reflect.Value, path string) {
	d.seen[path] = v.pos
	if fv.Kind() == reflect.Pointer {
		nv := reflect.New(fv.Type().Elem())
		d.decodeValue(v, nv.Elem(), path)
		fv.Set(nv)
		return
	}
	if cd, ok := fv.Addr().Interface().(customDecoder); ok {
		if err := cd.decodeTOML(v); err != nil {
			d.errorf(v.pos, path, "%v", err)
		}
		return
	}
	if fv.Type() == durationType {
		if v.kind != kindString {
			d.errorf(v.pos, path, "expected a duration string such as \"500ms\", \"2s\" or \"1h\", got %s", v.kind)
			return
		}
		dur, err := ParseDuration(v.s)
		if err != nil {
			d.errorf(v.pos, path, "%v", err)
			return
		}
		fv.SetInt(int64(dur))
		return
	}
	switch fv.Kind() {
	case reflect.String:
		if v.kind != kindString {
			d.errorf(v.pos, path, "expected a string, got %s", v.kind)
			return
		}
		fv.SetString(v.s)
	case reflect.Int, reflect.Int64, reflect.Uint32:
		if v.kind != kindInt {
			d.errorf(v.pos, path, "expected an integer, got %s", v.kind)
			return
		}
		if fv.Kind() == reflect.Uint32 {
			if v.i < 0 || v.i > 1<<32-1 {
				d.errorf(v.pos, path, "%d out of range; expected 0 to 4294967295", v.i)
				return
			}
			fv.SetUint(uint64(v.i))
			return
		}
		fv.SetInt(v.i)
	case reflect.Bool:
		if v.kind != kindBool {
			d.errorf(v.pos, path, "expected true or false, got %s", v.kind)
			return
		}
		fv.SetBool(v.b)
	case reflect.Slice:
		if v.kind != kindArray {
			d.errorf(v.pos, path, "expected an array, got %s", v.kind)
			return
		}
		s := reflect.MakeSlice(fv.Type(), len(v.arr), len(v.arr))
		for i, e := range v.arr {
			d.decodeValue(e, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		fv.Set(s)
		d.seen[path+"[]"] = v.pos
	case reflect.Struct:
		if v.kind != kindTable {
			d.errorf(v.pos, path, "expected a table, got %s", v.kind)
			return
		}
		d.seen[path] = v.pos
		d.decodeStruct(v.tbl, fv, path)
	default:
		panic(fmt.Sprintf("config: unsupported field kind %s at %s", fv.Kind(), path))
	}
}
