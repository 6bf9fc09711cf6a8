// Package lb turns the desired services into nftables state: the dispatch
// verdict maps, one chain per service, and the shared slot maps from which a
// service's rule picks a backend. This file is where a backend gets chosen:
// every scheduler is a table of M slots filled in proportion to weight, and
// the kernel only computes a slot number (numgen or jhash mod M).
package lb

import (
	"hash/fnv"
	"math/big"
	"sort"
)

// Weighted is a backend candidate for the slot table. Key identifies it
// stably (its address); Weight is relative, 0 means "no slots".
type Weighted struct {
	Key    string
	Weight int
}

// Modulus picks the fixed slot count M of a service from its configured
// backends. It depends only on the config, so health changes never change
// the rule, only slot elements.
//
//   - rr/random: a multiple of the reduced weight sum of the primaries, so
//     that with every backend up the shares are exact (and N requests over
//     N backends of equal weight land exactly evenly), and at least 32 so a
//     backend that goes down spreads its share over the rest finely.
//   - lc/wlc: as rr, but at least 64, so the shares the active-flow counts
//     give can be told apart.
//   - sh/mh: a prime (Maglev needs M prime to make each backend's
//     permutation cover every slot), about 32 slots per backend, so that the
//     table is balanced and a removal disturbs few other slots.
func Modulus(scheduler string, primaries []Weighted, total int) int {
	switch scheduler {
	case "sh", "mh":
		n := total
		if n < 1 {
			n = 1
		}
		return nextPrime(max(97, 32*n))
	}
	g, sum := 0, 0
	for _, b := range primaries {
		if b.Weight > 0 {
			g = gcd(g, b.Weight)
			sum += b.Weight
		}
	}
	floor := 32
	if scheduler == "lc" || scheduler == "wlc" {
		floor = 64
	}
	if sum == 0 {
		return floor
	}
	w := sum / g
	if w >= floor {
		if w > 4096 {
			return 4096
		}
		return w
	}
	return w * ((floor + w - 1) / w)
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func nextPrime(n int) int {
	for !big.NewInt(int64(n)).ProbablyPrime(0) {
		n++
	}
	return n
}

// FillRoundRobin fills m slots with smooth weighted round robin (the
// nginx algorithm): shares are proportional to weight, and consecutive slots
// go to different backends as much as the weights allow, so `numgen inc`
// walking the slots interleaves the backends. Returns indexes into bs, or nil
// when no backend has weight.
func FillRoundRobin(bs []Weighted, m int) []int {
	total := 0
	for _, b := range bs {
		if b.Weight > 0 {
			total += b.Weight
		}
	}
	if total == 0 || m <= 0 {
		return nil
	}
	cur := make([]int, len(bs))
	out := make([]int, m)
	for s := 0; s < m; s++ {
		best := -1
		for i, b := range bs {
			if b.Weight <= 0 {
				continue
			}
			cur[i] += b.Weight
			if best < 0 || cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= total
		out[s] = best
	}
	return out
}

// FillMaglev fills m slots (m prime) with the Maglev algorithm, weighted:
// each backend walks its own permutation of the slots and claims the next
// free one when its turn comes; a backend of weight w gets w turns for every
// turn of a backend of weight 1. Permutations come from the backend key
// alone, and backends are ordered by key, so the table depends only on the
// set of (key, weight): not on config order or process state.
func FillMaglev(bs []Weighted, m int) []int {
	type cand struct {
		idx          int
		offset, skip uint64
		next         uint64
		credit       int
		weight       int
	}
	var cs []*cand
	maxW := 0
	for i, b := range bs {
		if b.Weight <= 0 {
			continue
		}
		cs = append(cs, &cand{idx: i, offset: hashKey(b.Key, 0x6c6264) % uint64(m),
			skip: hashKey(b.Key, 0x736b6970)%uint64(m-1) + 1, weight: b.Weight})
		maxW = max(maxW, b.Weight)
	}
	if len(cs) == 0 || m <= 1 {
		if len(cs) > 0 {
			return []int{cs[0].idx}
		}
		return nil
	}
	sort.Slice(cs, func(i, j int) bool { return bs[cs[i].idx].Key < bs[cs[j].idx].Key })
	out := make([]int, m)
	for i := range out {
		out[i] = -1
	}
	filled := 0
	for filled < m {
		for _, c := range cs {
			c.credit += c.weight
			for c.credit >= maxW && filled < m {
				c.credit -= maxW
				for {
					slot := (c.offset + c.next*c.skip) % uint64(m)
					c.next++
					if out[slot] < 0 {
						out[slot] = c.idx
						filled++
						break
					}
				}
			}
		}
	}
	return out
}

func hashKey(key string, seed uint64) uint64 {
	h := fnv.New64a()
	var b [8]byte
	for i := range b {
		b[i] = byte(seed >> (8 * i))
	}
	h.Write(b[:])
	h.Write([]byte(key))
	return h.Sum64()
}

// HashSeed is the jhash seed of a hashing service. It comes from the
// service's endpoint only, so two appliances with the same config hash a
// client identically, and it is never 0 (0 would let the kernel pick a
// random seed).
func HashSeed(endpoint string) uint32 {
	s := uint32(hashKey(endpoint, 0x73656564))
	if s == 0 {
		s = 1
	}
	return s
}
