package update

// CompareVersions orders two version strings the way systemd-boot orders
// its entries (strverscmp_improved of systemd's fundamental/string-util,
// used since v250): -1 when a is older than b, 0 when equal, 1 when newer.
// It matters because systemd-boot boots the entry with the newest
// IMAGE_VERSION first: an update is only tried if its version sorts after
// the running one, so `lbd update` checks with the same rules.
//
// Segments are compared one by one: numbers numerically (leading zeros
// ignored), letters as strings, a '~' segment sorts before anything (pre-
// releases), a '-' separator before '^' and '.', and a string with more
// segments is newer.
func CompareVersions(a, b string) int {
	if a == "" || b == "" {
		return cmp(a, b)
	}
	i, j := 0, 0
	at := func(s string, k int) byte {
		if k < len(s) {
			return s[k]
		}
		return 0
	}
	for {
		for i < len(a) && !validVersionChar(a[i]) {
			i++
		}
		for j < len(b) && !validVersionChar(b[j]) {
			j++
		}
		ca, cb := at(a, i), at(b, j)
		if ca == '~' || cb == '~' {
			if r := cmpBool(ca != '~', cb != '~'); r != 0 {
				return r
			}
			i++
			j++
			ca, cb = at(a, i), at(b, j)
		}
		if ca == 0 || cb == 0 {
			return cmpInt(int(ca), int(cb))
		}
		for _, sep := range []byte{'-', '^', '.'} {
			if ca == sep || cb == sep {
				if r := cmpBool(ca != sep, cb != sep); r != 0 {
					return r
				}
				i++
				j++
				ca, cb = at(a, i), at(b, j)
			}
		}
		if isDigit(ca) || isDigit(cb) {
			ea, eb := i, j
			for ea < len(a) && isDigit(a[ea]) {
				ea++
			}
			for eb < len(b) && isDigit(b[eb]) {
				eb++
			}
			if r := cmpBool(ea != i, eb != j); r != 0 {
				return r
			}
			for i < ea && a[i] == '0' {
				i++
			}
			for j < eb && b[j] == '0' {
				j++
			}
			if r := cmpInt(ea-i, eb-j); r != 0 {
				return r
			}
			if r := cmp(a[i:ea], b[j:eb]); r != 0 {
				return r
			}
			i, j = ea, eb
			continue
		}
		ea, eb := i, j
		for ea < len(a) && isAlpha(a[ea]) {
			ea++
		}
		for eb < len(b) && isAlpha(b[eb]) {
			eb++
		}
		n := min(ea-i, eb-j)
		if r := cmp(a[i:i+n], b[j:j+n]); r != 0 {
			return r
		}
		if r := cmpInt(ea-i, eb-j); r != 0 {
			return r
		}
		// Empty segments (a separator follows one just consumed) make no
		// progress here; the next round consumes that separator.
		i, j = ea, eb
	}
}

func validVersionChar(c byte) bool {
	return isDigit(c) || isAlpha(c) || c == '~' || c == '-' || c == '^' || c == '.'
}
func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

func cmp(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// cmpBool orders false before true, as C's CMP on booleans.
func cmpBool(a, b bool) int {
	ai, bi := 0, 0
	if a {
		ai = 1
	}
	if b {
		bi = 1
	}
	return cmpInt(ai, bi)
}
