package config

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// Pos is a place in the config file, 1-based.
type Pos struct {
	Line, Col int
}

// value is one TOML value with the place it was written. The decoder works on
// this tree rather than on go-toml's own decoding so that every error, also a
// type error deep inside an array of tables, can name its line and column and
// decoding can go on to report the next one.
type value struct {
	pos  Pos
	kind valueKind
	s    string
	i    int64
	f    float64
	b    bool
	arr  []*value
	tbl  *table
}

type valueKind int

const (
	kindString valueKind = iota
	kindInt
	kindFloat
	kindBool
	kindDateTime
	kindArray
	kindTable
)

func (k valueKind) String() string {
	return [...]string{"string", "integer", "float", "boolean", "date-time", "array", "table"}[k]
}

// table keeps keys in file order so errors come out in reading order. A
// slice, not maps: lb.toml's tables hold a handful of keys each, and a
// config of 10,000 services has about 100,000 of them, where two maps per
// table were a third of the parser's memory.
type table struct {
	entries []entry
}

type entry struct {
	key    string
	keyPos Pos
	val    *value
}

// get returns the value of key k, or nil.
func (t *table) get(k string) *value {
	for i := range t.entries {
		if t.entries[i].key == k {
			return t.entries[i].val
		}
	}
	return nil
}

func (t *table) set(k string, kp Pos, v *value) {
	for i := range t.entries {
		if t.entries[i].key == k {
			t.entries[i].keyPos, t.entries[i].val = kp, v
			return
		}
	}
	t.entries = append(t.entries, entry{key: k, keyPos: kp, val: v})
}

// parseTree turns TOML text into a positioned tree. The text is first checked
// by go-toml's full decoder so TOML-level mistakes (syntax, redefined tables,
// duplicate keys) are reported exactly as the TOML spec defines them. It
// decodes into an empty struct: go-toml's key tracker checks every
// expression whatever the target, and a map would build a second copy of
// the whole document (a third of the parse time at 10,000 services).
func parseTree(data []byte) (*value, error) {
	var scratch struct{}
	if err := toml.Unmarshal(data, &scratch); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			line, col := de.Position()
			return nil, &Error{Pos: Pos{line, col}, Msg: "invalid TOML: " + de.Error()}
		}
		return nil, &Error{Msg: "invalid TOML: " + err.Error()}
	}
	b := &treeBuilder{names: map[string]string{}}
	b.root = b.newValue(value{kind: kindTable, tbl: b.newTable(), pos: Pos{1, 1}})
	b.p.Reset(data)
	b.lineStarts = make([]int, 1, bytes.Count(data, []byte{'\n'})+1)
	for i, c := range data {
		if c == '\n' {
			b.lineStarts = append(b.lineStarts, i+1)
		}
	}
	b.cur = b.root
	for b.p.NextExpression() {
		if err := b.expression(b.p.Expression()); err != nil {
			return nil, err
		}
	}
	if err := b.p.Error(); err != nil {
		return nil, &Error{Msg: "invalid TOML: " + err.Error()}
	}
	return b.root, nil
}

type treeBuilder struct {
	p          unstable.Parser
	lineStarts []int
	root       *value
	cur        *value
	// Allocation is most of a large parse's time (a 10,000-service file
	// has about 300,000 values), so values and tables come from slabs,
	// key parts go into one reused buffer and key names are interned.
	values  []value
	tables  []table
	entries []entry
	parts   []string
	names   map[string]string
}

// slabSize values or tables are allocated at a time.
const slabSize = 512

func (b *treeBuilder) newValue(v value) *value {
	if len(b.values) == cap(b.values) {
		b.values = make([]value, 0, slabSize)
	}
	b.values = append(b.values, v)
	return &b.values[len(b.values)-1]
}

// newTable hands out a table with room for the handful of keys a table of
// lb.toml holds.
func (b *treeBuilder) newTable() *table {
	if len(b.tables) == cap(b.tables) {
		b.tables = make([]table, 0, slabSize)
	}
	if len(b.entries) < 4 {
		b.entries = make([]entry, slabSize*4)
	}
	// Four entries of the slab, capped so a fifth reallocates instead of
	// running into the next table's.
	b.tables = append(b.tables, table{entries: b.entries[:0:4]})
	b.entries = b.entries[4:]
	return &b.tables[len(b.tables)-1]
}

// name interns a key, or a short string value: a file repeats the same
// few key names for every service and backend, and often the same
// backends, schedulers and protocols. The lookup with string(k) does not
// allocate.
func (b *treeBuilder) name(k []byte) string {
	if s, ok := b.names[string(k)]; ok {
		return s
	}
	s := string(k)
	b.names[s] = s
	return s
}

// pos turns a byte range into line:col by binary search over the line
// starts (go-toml's Shape rescans the document from the start on every
// call, which made large configs quadratic to parse).
func (b *treeBuilder) pos(r unstable.Range) Pos {
	off := int(r.Offset)
	line := sort.Search(len(b.lineStarts), func(i int) bool { return b.lineStarts[i] > off })
	return Pos{line, off - b.lineStarts[line-1] + 1}
}

// keyParts returns the parts of a key in a buffer that the next call
// reuses: copy what must outlive it.
func (b *treeBuilder) keyParts(n *unstable.Node) ([]string, Pos) {
	parts := b.parts[:0]
	var first Pos
	it := n.Key()
	for it.Next() {
		k := it.Node()
		if len(parts) == 0 {
			first = b.pos(k.Raw)
		}
		parts = append(parts, b.name(k.Data))
	}
	b.parts = parts
	return parts, first
}

func (b *treeBuilder) expression(n *unstable.Node) error {
	switch n.Kind {
	case unstable.Table, unstable.ArrayTable:
		parts, p := b.keyParts(n)
		t := b.root
		for i, k := range parts {
			last := i == len(parts)-1
			next := t.tbl.get(k)
			ok := next != nil
			switch {
			case last && n.Kind == unstable.ArrayTable:
				if !ok {
					next = b.newValue(value{kind: kindArray, pos: p})
					t.tbl.set(k, p, next)
				}
				elem := b.newValue(value{kind: kindTable, tbl: b.newTable(), pos: p})
				next.arr = append(next.arr, elem)
				next = elem
			case !ok:
				next = b.newValue(value{kind: kindTable, tbl: b.newTable(), pos: p})
				t.tbl.set(k, p, next)
			case next.kind == kindArray && len(next.arr) > 0:
				next = next.arr[len(next.arr)-1]
			}
			if next.kind != kindTable {
				return &Error{Pos: p, Msg: fmt.Sprintf("%s: is not a table", strings.Join(parts[:i+1], "."))}
			}
			if last && n.Kind == unstable.Table {
				next.pos = p
			}
			t = next
		}
		b.cur = t
	case unstable.KeyValue:
		return b.keyValue(b.cur, n)
	}
	return nil
}

func (b *treeBuilder) keyValue(into *value, n *unstable.Node) error {
	parts, kp := b.keyParts(n)
	last := parts[len(parts)-1] // b.value reuses the parts buffer (inline tables)
	t := into
	for _, k := range parts[:len(parts)-1] {
		next := t.tbl.get(k)
		if next == nil {
			next = b.newValue(value{kind: kindTable, tbl: b.newTable(), pos: kp})
			t.tbl.set(k, kp, next)
		}
		t = next
	}
	v, err := b.value(n.Value(), kp)
	if err != nil {
		return err
	}
	t.tbl.set(last, kp, v)
	return nil
}

func (b *treeBuilder) value(n *unstable.Node, at Pos) (*value, error) {
	v := b.newValue(value{pos: at})
	if n.Raw.Length > 0 {
		v.pos = b.pos(n.Raw)
	}
	switch n.Kind {
	case unstable.String:
		v.kind, v.s = kindString, string(n.Data)
		if len(n.Data) <= 64 {
			v.s = b.name(n.Data)
		}
	case unstable.Integer:
		v.kind = kindInt
		i, err := parseTOMLInt(string(n.Data))
		if err != nil {
			return nil, &Error{Pos: v.pos, Msg: "bad integer: " + err.Error()}
		}
		v.i = i
	case unstable.Float:
		v.kind = kindFloat
		f, _ := strconv.ParseFloat(strings.ReplaceAll(string(n.Data), "_", ""), 64)
		v.f = f
	case unstable.Bool:
		v.kind, v.b = kindBool, string(n.Data) == "true"
	case unstable.Array:
		v.kind = kindArray
		it := n.Children()
		for it.Next() {
			c := it.Node()
			if c.Kind == unstable.Comment {
				continue
			}
			e, err := b.value(c, v.pos)
			if err != nil {
				return nil, err
			}
			v.arr = append(v.arr, e)
		}
		if len(v.arr) > 0 {
			v.pos = v.arr[0].pos
			v.pos.Col-- // point at the '[' in the common one-line case
			if v.pos.Col < 1 {
				v.pos.Col = 1
			}
		}
	case unstable.InlineTable:
		v.kind, v.tbl = kindTable, b.newTable()
		it := n.Children()
		for it.Next() {
			c := it.Node()
			if c.Kind != unstable.KeyValue {
				continue
			}
			if err := b.keyValue(v, c); err != nil {
				return nil, err
			}
		}
	default:
		v.kind, v.s = kindDateTime, string(n.Data)
	}
	return v, nil
}

func parseTOMLInt(s string) (int64, error) {
	s = strings.ReplaceAll(s, "_", "")
	switch {
	case strings.HasPrefix(s, "0x"):
		return strconv.ParseInt(s[2:], 16, 64)
	case strings.HasPrefix(s, "0o"):
		return strconv.ParseInt(s[2:], 8, 64)
	case strings.HasPrefix(s, "0b"):
		return strconv.ParseInt(s[2:], 2, 64)
	}
	return strconv.ParseInt(s, 10, 64)
}
