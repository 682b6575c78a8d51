package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// report is one run's results (the -json output).
type report struct {
	Machine     machine          `json:"machine"`
	Options     map[string]any   `json:"options"`
	Started     time.Time        `json:"started"`
	Calibration calibration      `json:"calibration"`
	Backends    []backendReport  `json:"backends"`
	Skipped     []string         `json:"skipped,omitempty"`
	Summary     []summaryFigures `json:"summary"`
}

type calibration struct {
	ES256VerifyUs float64 `json:"es256_verify_us"`
	// ProxyUs is one plain proxied request (scenario A, the median over
	// every run of it): the time of a request divided by the clients.
	ProxyUs float64 `json:"proxy_us"`
}

type backendReport struct {
	Backend       string       `json:"backend"`
	FsyncFloorUs  float64      `json:"fsync_floor_us"`
	CommitFloorUs float64      `json:"commit_floor_us,omitempty"` // PostgreSQL only
	StartSeconds  float64      `json:"start_seconds"`
	StartMemory   memory       `json:"memory_at_start"`
	Sizes         []sizeReport `json:"sizes"`
}

type sizeReport struct {
	Size        int         `json:"size"`
	SeedSeconds float64     `json:"seed_seconds"`
	SeedRate    float64     `json:"seed_rate"`
	Seeded      memory      `json:"memory_after_seeding"`
	AfterRounds memory      `json:"memory_after_rounds"`
	Load        machineLoad `json:"machine_during_rounds"`
	Runs        []runResult `json:"runs"`
}

type runResult struct {
	Round      int     `json:"round"`
	Scenario   string  `json:"scenario"`
	Clients    int     `json:"clients"`
	TargetRate float64 `json:"target_rate,omitempty"`
	stats
	Ratio      float64 `json:"ratio_to_proxy,omitempty"`
	AddedP50us float64 `json:"added_p50_us,omitempty"`
}

const runHeader = "   round scenario                      clients      req/s      p50 µs      p99 µs    p99.9 µs   B/A   unexpected\n"

func (r runResult) row() string {
	ratio := "     "
	if r.Ratio > 0 {
		ratio = fmt.Sprintf("%5.2f", r.Ratio)
	}
	s := fmt.Sprintf("   %5d %-29s %7d %10.0f %11.0f %11.0f %11.0f %s %6d\n",
		r.Round, r.Scenario, r.Clients, r.Rate, r.P50us, r.P99us, r.P999us, ratio, r.Unexpected)
	if r.Sample != "" {
		s += "         first unexpected answer: " + r.Sample + "\n"
	}
	return s
}

// machine describes where the run ran.
type machine struct {
	CPUs    int    `json:"cpus"`
	CPU     string `json:"cpu"`
	Kernel  string `json:"kernel"`
	LoadAvg string `json:"load_average_at_start"`
	Go      string `json:"go"`
}

func describeMachine() machine {
	m := machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	m.LoadAvg = loadAverage()
	return m
}

// loadAverage is the 1, 5 and 15 minute load averages of /proc/loadavg.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}

// cpuClock is the time counters of all CPUs of /proc/stat, in ticks.
type cpuClock struct{ total, idle, steal uint64 }

// readCPUClock reads the "cpu" line of /proc/stat: user nice system idle
// iowait irq softirq steal (guest time is within user).
func readCPUClock() (cpuClock, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuClock{}, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return cpuClock{}, false
	}
	var v [8]uint64
	for i := range v {
		n, err := strconv.ParseUint(f[i+1], 10, 64)
		if err != nil {
			return cpuClock{}, false
		}
		v[i] = n
	}
	var c cpuClock
	for _, n := range v {
		c.total += n
	}
	c.idle, c.steal = v[3]+v[4], v[7]
	return c, true
}

// machineLoad is what the machine did while a size's rounds ran: the load
// average at their end, the share of the CPUs' time busy (harness,
// Caddy, PostgreSQL, anything else) and the share stolen by the
// hypervisor for other guests. A steal above a few percent means that the
// rates of those rounds are not comparable with a quiet run's.
type machineLoad struct {
	LoadAvg string  `json:"load_average"`
	Busy    float64 `json:"cpu_busy"`
	Steal   float64 `json:"cpu_steal"`
}

func measureLoad(from, to cpuClock) machineLoad {
	l := machineLoad{LoadAvg: loadAverage()}
	if d := to.total - from.total; to.total > from.total {
		l.Busy = float64(d-(to.idle-from.idle)) / float64(d)
		l.Steal = float64(to.steal-from.steal) / float64(d)
	}
	return l
}

func (l machineLoad) String() string {
	return fmt.Sprintf("load average %s, CPUs busy %.0f%%, stolen by the hypervisor %.1f%%", l.LoadAvg, 100*l.Busy, 100*l.Steal)
}

func (m machine) text() string {
	return fmt.Sprintf("machine: %d CPUs (%s), Linux %s, load average %s, %s\n", m.CPUs, m.CPU, m.Kernel, m.LoadAvg, m.Go)
}

func (o options) summary() map[string]any {
	return map[string]any{
		"duration": o.duration.String(), "calibration": o.calibration.String(), "rounds": o.rounds, "sizes": o.sizes, "owners": o.owners,
		"scenarios": o.scenarios, "backends": o.backends, "rpts": o.rptSet,
		"clients": map[string]int{
			scenarioProxy: o.proxyClients, scenarioGrant: o.grantClients, scenarioGrantOne: 1,
			scenarioRefresh: o.refreshClients, scenarioIntrospect: o.introspectClients, scenarioDecision: o.decisionClients,
		},
	}
}

func (r *report) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// proxyUnit is one plain proxied request: clients / throughput of A,
// the median over every run of A.
func (r *report) proxyUnit() float64 {
	var per []float64
	for _, b := range r.Backends {
		for _, s := range b.Sizes {
			for _, run := range s.Runs {
				if run.Scenario == scenarioProxy && run.Rate > 0 {
					per = append(per, float64(run.Clients)/run.Rate*1e6)
				}
			}
		}
	}
	return median(per)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// summaryFigures are the medians over the rounds of one scenario at one
// size of one backend.
type summaryFigures struct {
	Backend    string  `json:"backend"`
	Size       int     `json:"size"`
	Scenario   string  `json:"scenario"`
	Rate       float64 `json:"rate"`
	P50us      float64 `json:"p50_us"`
	P99us      float64 `json:"p99_us"`
	P999us     float64 `json:"p999_us"`
	Ratio      float64 `json:"ratio_to_proxy,omitempty"`
	AddedP50us float64 `json:"added_p50_us,omitempty"`
	OK         int     `json:"ok"`
	Unexpected int     `json:"unexpected"`
	// VsSmallest is the scenario's figure (flatFigure) over its figure at
	// the smallest size: 1 is flat.
	VsSmallest float64 `json:"vs_smallest_size,omitempty"`
}

// flatFigure is the figure of a scenario that should not change with the
// number of resources: the ratio to the plain proxy of the same round for
// the proxied scenarios (the proxy's own rate drifts with the machine's
// load), the throughput otherwise. The plain proxy and the paced half-load
// runs (their rate is set, not measured) have none.
func (f summaryFigures) flatFigure() (float64, bool) {
	switch {
	case f.Scenario == scenarioProxy || strings.HasPrefix(f.Scenario, scenarioHalfLoad):
		return 0, false
	case f.Scenario == scenarioAuthorized || f.Scenario == scenarioTokenless:
		return f.Ratio, f.Ratio > 0
	default:
		return f.Rate, f.Rate > 0
	}
}

func (r *report) computeSummary() {
	r.Summary = nil
	for _, b := range r.Backends {
		base := map[string]float64{}
		for _, s := range b.Sizes {
			var order []string
			by := map[string][]runResult{}
			for _, run := range s.Runs {
				if _, ok := by[run.Scenario]; !ok {
					order = append(order, run.Scenario)
				}
				by[run.Scenario] = append(by[run.Scenario], run)
			}
			for _, sc := range order {
				runs := by[sc]
				f := summaryFigures{Backend: b.Backend, Size: s.Size, Scenario: sc}
				pick := func(get func(runResult) float64) float64 {
					var v []float64
					for _, run := range runs {
						v = append(v, get(run))
					}
					return median(v)
				}
				f.Rate = pick(func(x runResult) float64 { return x.Rate })
				f.P50us = pick(func(x runResult) float64 { return x.P50us })
				f.P99us = pick(func(x runResult) float64 { return x.P99us })
				f.P999us = pick(func(x runResult) float64 { return x.P999us })
				f.Ratio = pick(func(x runResult) float64 { return x.Ratio })
				f.AddedP50us = pick(func(x runResult) float64 { return x.AddedP50us })
				for _, run := range runs {
					f.OK += run.OK
					f.Unexpected += run.Unexpected
				}
				if fig, ok := f.flatFigure(); ok {
					if v, ok := base[sc]; ok && v > 0 {
						f.VsSmallest = fig / v
					} else {
						base[sc] = fig
					}
				}
				r.Summary = append(r.Summary, f)
			}
		}
	}
}

// summary is the text of the medians, the slopes and the targets.
func (r *report) summary() string {
	r.computeSummary()
	var b strings.Builder
	fmt.Fprintf(&b, "\n== summary (medians over the rounds)\n")
	fmt.Fprintf(&b, "calibration: ES256 verify %.1f µs; plain proxied request (A) %.1f µs per client\n",
		r.Calibration.ES256VerifyUs, r.Calibration.ProxyUs)
	for _, be := range r.Backends {
		fmt.Fprintf(&b, "%s: fsync floor %.0f µs", be.Backend, be.FsyncFloorUs)
		if be.CommitFloorUs > 0 {
			fmt.Fprintf(&b, ", PostgreSQL commit floor %.0f µs", be.CommitFloorUs)
		}
		fmt.Fprintf(&b, "; started in %.1f s with RSS %.0f MiB", be.StartSeconds, be.StartMemory.RSS)
		for _, s := range be.Sizes {
			fmt.Fprintf(&b, "; RSS at %d resources %.0f MiB", s.Size, s.Seeded.RSS)
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "%-9s %7s %-24s %10s %10s %10s %10s %6s %10s %8s\n",
		"backend", "size", "scenario", "req/s", "p50 µs", "p99 µs", "p99.9 µs", "B/A", "vs size 1", "+p50 µs")
	for _, f := range r.Summary {
		ratio, vs, added := "", "", ""
		if f.Ratio > 0 {
			ratio = fmt.Sprintf("%.2f", f.Ratio)
		}
		if f.VsSmallest > 0 {
			vs = fmt.Sprintf("%.2f", f.VsSmallest)
		}
		if f.AddedP50us != 0 {
			added = fmt.Sprintf("%+.0f", f.AddedP50us)
		}
		fmt.Fprintf(&b, "%-9s %7d %-24s %10.0f %10.0f %10.0f %10.0f %6s %10s %8s\n",
			f.Backend, f.Size, f.Scenario, f.Rate, f.P50us, f.P99us, f.P999us, ratio, vs, added)
	}
	b.WriteString(r.slopes())
	b.WriteString(r.targets())
	return b.String()
}

// slopes gives, per scenario, the change of throughput per tenfold
// resources between the smallest and the largest size.
func (r *report) slopes() string {
	var b strings.Builder
	b.WriteString("\nslope (change per 10x resources, smallest to largest size, of the B/A ratio for authorized and tokenless, else of the throughput):\n")
	for _, be := range r.Backends {
		if len(be.Sizes) < 2 {
			continue
		}
		lo, hi := be.Sizes[0].Size, be.Sizes[len(be.Sizes)-1].Size
		for _, f := range r.Summary {
			if f.Backend != be.Backend || f.Size != hi || f.VsSmallest == 0 {
				continue
			}
			decades := math.Log10(float64(hi) / float64(lo))
			per := math.Pow(f.VsSmallest, 1/decades)
			fmt.Fprintf(&b, "  %-9s %-24s %d -> %d: %.2fx (%+.0f%% per 10x)\n", be.Backend, f.Scenario, lo, hi, f.VsSmallest, (per-1)*100)
		}
	}
	return b.String()
}

func (r *report) figure(backend string, size int, scenario string) (summaryFigures, bool) {
	for _, f := range r.Summary {
		if f.Backend == backend && f.Size == size && f.Scenario == scenario {
			return f, true
		}
	}
	return summaryFigures{}, false
}

// targets checks the figures against the targets.
func (r *report) targets() string {
	var b strings.Builder
	b.WriteString("\ntargets:\n")
	mark := func(ok bool) string {
		if ok {
			return "met"
		}
		return "MISSED"
	}
	for _, be := range r.Backends {
		if len(be.Sizes) == 0 {
			continue
		}
		lo, hi := be.Sizes[0], be.Sizes[len(be.Sizes)-1]
		ends := []int{lo.Size}
		if hi.Size != lo.Size {
			ends = append(ends, hi.Size)
		}
		for _, size := range ends {
			if f, ok := r.figure(be.Backend, size, scenarioAuthorized); ok {
				fmt.Fprintf(&b, "  %-9s authorized >= 0.95x proxy (size %d): %.2fx %s\n", be.Backend, size, f.Ratio, mark(f.Ratio >= 0.95))
			}
			if f, ok := r.figure(be.Backend, size, scenarioHalfLoad+"/"+scenarioAuthorized); ok {
				fmt.Fprintf(&b, "  %-9s added p50 at half load < 50 µs (size %d): %+.0f µs %s\n", be.Backend, size, f.AddedP50us, mark(f.AddedP50us < 50))
			}
			if f, ok := r.figure(be.Backend, size, scenarioTokenless); ok {
				fmt.Fprintf(&b, "  %-9s tokenless >= 1.0x proxy (size %d): %.2fx %s\n", be.Backend, size, f.Ratio, mark(f.Ratio >= 1.0))
			}
			if f, ok := r.figure(be.Backend, size, scenarioGrant); ok {
				fmt.Fprintf(&b, "  %-9s grants >= 3000/s, p99 < 50 ms (size %d): %.0f/s, p99 %.1f ms %s\n", be.Backend, size, f.Rate, f.P99us/1e3, mark(f.Rate >= 3000 && f.P99us < 50e3))
			}
		}
		if f, ok := r.figure(be.Backend, lo.Size, scenarioGrantOne); ok && f.Rate > 0 {
			floor := be.FsyncFloorUs
			if be.CommitFloorUs > 0 {
				floor = be.CommitFloorUs
			}
			per := 1e6 / f.Rate / floor
			fmt.Fprintf(&b, "  %-9s one client (size %d): %.0f grants/s, %.0f µs each = %.1f commit floors of %.0f µs, rate %.3fx the floor's %.0f/s (goal: about 1 floor per grant)\n",
				be.Backend, lo.Size, f.Rate, 1e6/f.Rate, per, floor, 1/per, 1e6/floor)
		}
		if lo.Size != hi.Size {
			for _, f := range r.Summary {
				if f.Backend == be.Backend && f.Size == hi.Size && f.VsSmallest > 0 {
					fmt.Fprintf(&b, "  %-9s %-24s flat, no more than 10%% below (%d vs %d): %.2fx %s\n", be.Backend, f.Scenario, hi.Size, lo.Size, f.VsSmallest, mark(f.VsSmallest >= 0.9))
				}
			}
		}
		fmt.Fprintf(&b, "  %-9s RSS < 300 MiB at %d resources: %.0f MiB %s\n", be.Backend, hi.Size, hi.Seeded.RSS, mark(hi.Seeded.RSS < 300))
	}
	return b.String()
}
