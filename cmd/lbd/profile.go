package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
)

// startProfiles writes Go profiles for the benchmarks of issue 13 (where
// does a cold start of 10,000 services spend its time and memory) when the
// environment asks: LBD_CPUPROFILE=FILE profiles the CPU from exec to exit,
// LBD_MEMPROFILE=FILE writes the heap's allocation profile at exit. Neither
// is set on an appliance; the returned stop is always safe to call.
func startProfiles() (stop func()) {
	cpu, mem := os.Getenv("LBD_CPUPROFILE"), os.Getenv("LBD_MEMPROFILE")
	var f *os.File
	if cpu != "" {
		var err error
		if f, err = os.Create(cpu); err != nil {
			fmt.Fprintf(os.Stderr, "lbd: LBD_CPUPROFILE: %v\n", err)
		} else if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(os.Stderr, "lbd: LBD_CPUPROFILE: %v\n", err)
			f.Close()
			f = nil
		}
	}
	return func() {
		if f != nil {
			pprof.StopCPUProfile()
			f.Close()
		}
		if mem == "" {
			return
		}
		runtime.GC()
		m, err := os.Create(mem)
		if err != nil {
			fmt.Fprintf(os.Stderr, "lbd: LBD_MEMPROFILE: %v\n", err)
			return
		}
		defer m.Close()
		if err := pprof.Lookup("allocs").WriteTo(m, 0); err != nil {
			fmt.Fprintf(os.Stderr, "lbd: LBD_MEMPROFILE: %v\n", err)
		}
	}
}
