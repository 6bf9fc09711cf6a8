package health

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ParseExpectStatus turns the config forms of expect_status into ranges:
// "200", "200-399" and "2xx" (the whole class). Every bad item is reported.
// An empty list yields nil, which Normalize turns into the default 200-399.
func ParseExpectStatus(items []string) ([]StatusRange, error) {
	var out []StatusRange
	var errs []error
	for _, it := range items {
		r, err := parseStatusItem(strings.TrimSpace(it))
		if err != nil {
			errs = append(errs, fmt.Errorf("expect_status %q: %w", it, err))
			continue
		}
		out = append(out, r)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

func parseStatusItem(s string) (StatusRange, error) {
	if len(s) == 3 && strings.EqualFold(s[1:], "xx") && s[0] >= '1' && s[0] <= '5' {
		base := int(s[0]-'0') * 100
		return StatusRange{Min: base, Max: base + 99}, nil
	}
	lo, hi, isRange := strings.Cut(s, "-")
	low, err := parseCode(lo)
	if err != nil {
		return StatusRange{}, err
	}
	high := low
	if isRange {
		if high, err = parseCode(hi); err != nil {
			return StatusRange{}, err
		}
	}
	r := StatusRange{Min: low, Max: high}
	if err := r.validate(); err != nil {
		return StatusRange{}, err
	}
	return r, nil
}

func parseCode(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("expected a status code like 200, a range like 200-399 or a class like 2xx")
	}
	return n, nil
}

// ParsePayload turns the config form of a udp payload into bytes:
// "hex:0a0b..." is hex (whitespace and ':' between bytes allowed, so
// "hex:de ad be ef" and "hex:de:ad" work), "text:..." is taken literally
// (for a text that itself starts with "hex:"), anything else is plain text.
func ParsePayload(s string) ([]byte, error) {
	switch {
	case strings.HasPrefix(s, "hex:"):
		digits := strings.Map(func(r rune) rune {
			if r == ' ' || r == '\t' || r == '\n' || r == ':' {
				return -1
			}
			return r
		}, s[len("hex:"):])
		b, err := hex.DecodeString(digits)
		if err != nil {
			return nil, fmt.Errorf("payload %q: bad hex: %w", s, err)
		}
		return b, nil
	case strings.HasPrefix(s, "text:"):
		return []byte(s[len("text:"):]), nil
	default:
		return []byte(s), nil
	}
}
