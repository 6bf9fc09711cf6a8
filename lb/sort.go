package lb

import "sort"

func sortByName(s []*Service) {
	sort.Slice(s, func(i, j int) bool { return s[i].Name < s[j].Name })
}
