package config

import (
	"math"
	"math/bits"
	"time"
)

// Bounds the kernel puts on values lbd hands it. A config that passes
// `lbd check` must also apply, so the validator refuses here, with the key
// and line, what the kernel would refuse later with a bare errno. Each
// bound names the kernel code it comes from (Linux 6.x).

const (
	// maxU32 bounds every value the kernel takes as a 32-bit attribute:
	// NFTA_LIMIT_BURST (limit burst), NFTA_CONNLIMIT_COUNT (ct count).
	// Go ints wider than that would be truncated on the way, silently.
	maxU32 = 1<<32 - 1

	// defaultBurst is what nft_limit_init uses for a packet limit sent
	// with burst 0 (NFT_LIMIT_PKT_BURST_DEFAULT).
	defaultBurst = 5

	// maxSysctlSeconds bounds conntrack timeouts: the sysctls are int
	// jiffies written through proc_dointvec_jiffies, which refuses (EINVAL)
	// seconds > INT_MAX / HZ. HZ is a kernel build option of up to 1000;
	// using 1000 keeps a config valid on every kernel (24 days 20 h).
	maxSysctlSeconds = math.MaxInt32 / 1000

	// minSetTimeout is the smallest persistence the kernel can hold: set
	// element timeouts travel in milliseconds (NFTA_DYNSET_TIMEOUT), and a
	// timeout that rounds to 0 ms is sent as none, which the kernel takes
	// as "never expires".
	minSetTimeout = time.Millisecond
)

// rateUnitNanos is the length of a rate's unit, as nft_limit_init sees it
// (NFTA_LIMIT_UNIT seconds times NSEC_PER_SEC).
func rateUnitNanos(r Rate) uint64 {
	switch r.Unit {
	case "minute":
		return uint64(time.Minute)
	case "hour":
		return uint64(time.Hour)
	}
	return uint64(time.Second)
}

// maxLimitBurst is the largest burst nft_limit_init accepts with rate r
// for a packet limit: it computes tokens = (unit_ns / rate) * burst in
// 64 bits and refuses an overflow with EOVERFLOW ("value too large for
// defined data type"). rate + burst must not overflow either, which a
// 32-bit rate and burst never do.
func maxLimitBurst(r Rate) uint64 {
	per := rateUnitNanos(r) / r.N
	if per == 0 {
		return maxU32
	}
	return min(maxU32, math.MaxUint64/per)
}

// maxClientRateBurst is the largest burst usable with a per-client rate.
// lb keeps each client's bucket in a set element whose timeout is twice
// the bucket's refill time (unit * burst / rate), computed in float64 and
// held as a time.Duration: the refill time is kept under a quarter of the
// largest Duration (73 years), so doubling it never overflows, whatever
// the float rounding. That is tighter than the kernel's own limit bound.
func maxClientRateBurst(r Rate) uint64 {
	// unit*burst/rate <= MaxInt64/4  <=>  burst <= MaxInt64/4 * rate / unit.
	hi, lo := bits.Mul64(uint64(math.MaxInt64/4), r.N)
	q, _ := bits.Div64(hi, lo, rateUnitNanos(r))
	return min(maxLimitBurst(r), q)
}

// checkLimit refuses a rate/burst pair the kernel (or lb's bucket timeout,
// for per-client rates) cannot hold, at the burst key.
func (v *validator) checkLimit(p, rateKey string, r Rate, burst int, perClient bool) {
	// burst 0 is the kernel's default of 5, which fits every rate.
	if !r.IsSet() || burst <= 0 {
		return
	}
	most := maxLimitBurst(r)
	if perClient {
		most = maxClientRateBurst(r)
	}
	if uint64(burst) > most {
		v.errorf(p+".burst", "%d is too large for %s %q (the kernel's token bucket, unit/rate x burst, would overflow); expected at most %d", burst, rateKey, r, most)
	}
}
