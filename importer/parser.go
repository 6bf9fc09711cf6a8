package importer

import "fmt"

// node is one keepalived statement: a keyword, its arguments on the same
// line, and the statements of its { } block if it has one.
type node struct {
	key      string
	args     []string
	pos      Pos
	block    bool
	children []*node
}

func (n *node) arg(i int) string {
	if i < len(n.args) {
		return n.args[i]
	}
	return ""
}

type parser struct {
	toks []token
	i    int
}

// parse builds the statement tree from the lexer's tokens.
func parse(toks []token) ([]*node, error) {
	p := &parser{toks: toks}
	nodes, err := p.block()
	if err != nil {
		return nil, err
	}
	if p.i < len(p.toks) {
		return nil, fmt.Errorf("%s: unexpected '}' (no block to close)", p.toks[p.i].pos)
	}
	return nodes, nil
}

func (p *parser) isBrace(t token, b string) bool { return !t.quoted && t.text == b }

// block reads statements until a closing brace (left for the caller, which
// knows where the block opened) or the end of input.
func (p *parser) block() ([]*node, error) {
	var out []*node
	for p.i < len(p.toks) {
		t := p.toks[p.i]
		if p.isBrace(t, "}") {
			return out, nil
		}
		if p.isBrace(t, "{") {
			return nil, fmt.Errorf("%s: '{' without a keyword before it", t.pos)
		}
		n := &node{key: t.text, pos: t.pos}
		p.i++
		endOfLine := t.eol
		for !endOfLine && p.i < len(p.toks) {
			a := p.toks[p.i]
			if p.isBrace(a, "{") || p.isBrace(a, "}") {
				break
			}
			n.args = append(n.args, a.text)
			endOfLine = a.eol
			p.i++
		}
		// The block may open on the same line or alone on the next one.
		if p.i < len(p.toks) && p.isBrace(p.toks[p.i], "{") {
			p.i++
			kids, err := p.block()
			if err != nil {
				return nil, err
			}
			if p.i >= len(p.toks) {
				return nil, fmt.Errorf("%s: block %q is never closed with '}'", n.pos, n.key)
			}
			p.i++ // the '}'
			n.block, n.children = true, kids
		}
		out = append(out, n)
	}
	return out, nil
}
