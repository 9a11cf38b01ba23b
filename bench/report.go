package bench

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// Round is one run of a workload against one target: its figures, or why there are none.
type Round struct {
	// Round counts from 1.
	Round int `json:"round"`
	// Figures are what the round measured; empty when Error is set.
	Figures Figures `json:"figures,omitempty"`
	// Error says why the round measured nothing.
	Error string `json:"error,omitempty"`
	// Unreachable is set when the target could not be reached at all (an *UnreachableError).
	Unreachable bool `json:"unreachable,omitempty"`
}

// Failed reports whether the round measured nothing.
func (r Round) Failed() bool { return r.Error != "" }

// Report is what RunRounds measured: every round of every target. Its tables, JSON and SVG
// give each figure's median over a target's rounds, its min and max, and the ratio of its
// median to the first target's.
type Report struct {
	// Workload is the workload's name (pubsub, storm, ...).
	Workload string
	// Targets are the targets in the order given; the first is the reference of the ratios.
	Targets []Target
	// Rounds holds each target's rounds in order, keyed by target name.
	Rounds map[string][]Round
	// Meta is free-form context (rounds, start time, machine, versions, flags).
	Meta map[string]string
}

// Stat is one figure over one target's rounds.
type Stat struct {
	// N is the number of rounds that measured the figure.
	N int `json:"n"`
	// Median, Min and Max are over those N rounds; all 0 when N is 0.
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	// Ratio is Median divided by the first target's median; 0 for the first target itself,
	// or when either median is missing or the first is 0.
	Ratio float64 `json:"ratio,omitempty"`
}

// Row is one figure across every target, in the order of Report.Targets.
type Row struct {
	// Name, Unit and Higher are the figure's (see Figure).
	Name   string
	Unit   string
	Higher bool
	// Stats has one Stat per target, in the order of Report.Targets.
	Stats []Stat
}

// TargetStatus counts a target's rounds.
type TargetStatus struct {
	// Rounds is the number of rounds run; Failed of those that measured nothing; Unreachable
	// of those that failed because the target was unreachable.
	Rounds, Failed, Unreachable int
}

// Down reports whether no round of the target measured anything.
func (s TargetStatus) Down() bool { return s.Rounds > 0 && s.Failed == s.Rounds }

// Status counts the rounds of the target named name.
func (r *Report) Status(name string) TargetStatus {
	var s TargetStatus
	for _, rd := range r.Rounds[name] {
		s.Rounds++
		if rd.Failed() {
			s.Failed++
			if rd.Unreachable {
				s.Unreachable++
			}
		}
	}
	return s
}

// Rows returns one Row per figure, in the order the figures first appear (first target first).
func (r *Report) Rows() []Row {
	var rows []Row
	index := map[string]int{}
	values := map[string][][]float64{} // figure -> target index -> values
	for ti, t := range r.Targets {
		for _, rd := range r.Rounds[t.Name] {
			for _, f := range rd.Figures {
				if _, ok := index[f.Name]; !ok {
					index[f.Name] = len(rows)
					rows = append(rows, Row{Name: f.Name, Unit: f.Unit, Higher: f.Higher})
					values[f.Name] = make([][]float64, len(r.Targets))
				}
				values[f.Name][ti] = append(values[f.Name][ti], f.Value)
			}
		}
	}
	for i := range rows {
		stats := make([]Stat, len(r.Targets))
		for ti, vs := range values[rows[i].Name] {
			stats[ti] = statOf(vs)
		}
		if len(stats) > 0 && stats[0].N > 0 && stats[0].Median != 0 {
			for ti := 1; ti < len(stats); ti++ {
				if stats[ti].N > 0 {
					stats[ti].Ratio = stats[ti].Median / stats[0].Median
				}
			}
		}
		rows[i].Stats = stats
	}
	return rows
}

// statOf returns the median, min and max of vs.
func statOf(vs []float64) Stat {
	if len(vs) == 0 {
		return Stat{}
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return Stat{N: n, Median: med, Min: s[0], Max: s[n-1]}
}

// Median returns the median of the figure called figure over the rounds of the target called
// target, and whether any round measured it.
func (r *Report) Median(target, figure string) (float64, bool) {
	var vs []float64
	for _, rd := range r.Rounds[target] {
		if v, ok := rd.Figures.Get(figure); ok {
			vs = append(vs, v)
		}
	}
	s := statOf(vs)
	return s.Median, s.N > 0
}

// formatValue prints v with 3 significant digits, and no decimals from 100 up.
func formatValue(v float64) string {
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	dec := 2 - int(math.Floor(math.Log10(math.Abs(v))))
	dec = min(max(dec, 0), 4)
	return strconv.FormatFloat(v, 'f', dec, 64)
}

// cell is the text for one figure of one target: "median (min–max)", or "median" when every
// round gave the same value.
func cell(s Stat) string {
	if s.N == 0 {
		return "–"
	}
	med := formatValue(s.Median)
	lo, hi := formatValue(s.Min), formatValue(s.Max)
	if lo == hi {
		return med
	}
	return fmt.Sprintf("%s (%s–%s)", med, lo, hi)
}

func ratioCell(s Stat) string {
	if s.Ratio == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2fx", s.Ratio)
}

// grid is the comparison table as rows of cells; header first.
func (r *Report) grid() [][]string {
	header := []string{"figure", "unit"}
	for i, t := range r.Targets {
		header = append(header, t.Name)
		if i > 0 {
			header = append(header, "vs "+r.Targets[0].Name)
		}
	}
	out := [][]string{header}
	down := make([]string, len(r.Targets))
	for i, t := range r.Targets {
		switch st := r.Status(t.Name); {
		case st.Down() && st.Unreachable == st.Rounds:
			down[i] = "UNREACHABLE"
		case st.Down():
			down[i] = "FAILED"
		}
	}
	for _, row := range r.Rows() {
		line := []string{row.Name, row.Unit}
		for i, s := range row.Stats {
			c := cell(s)
			if down[i] != "" {
				c = down[i]
			}
			line = append(line, c)
			if i > 0 {
				line = append(line, ratioCell(s))
			}
		}
		out = append(out, line)
	}
	if len(out) == 1 { // no figures at all: one line that still says which targets are down
		line := []string{"(no figures)", ""}
		for i := range r.Targets {
			line = append(line, cmp.Or(down[i], "–"))
			if i > 0 {
				line = append(line, "–")
			}
		}
		out = append(out, line)
	}
	return out
}

// title is the line above a table.
func (r *Report) title() string {
	names := make([]string, len(r.Targets))
	for i, t := range r.Targets {
		names[i] = t.Name
	}
	rounds := 0
	for _, t := range r.Targets {
		rounds = max(rounds, len(r.Rounds[t.Name]))
	}
	s := fmt.Sprintf("%s: %d round(s) per target, alternating %s; median (min–max)", r.Workload, rounds, strings.Join(names, " "))
	if len(r.Targets) > 1 {
		s += ", ratio of medians to " + r.Targets[0].Name
	}
	return s
}

// notes lists failed rounds, identical errors of a target grouped: "haproxy rounds 1,2,3: ...".
func (r *Report) notes() []string {
	var out []string
	for _, t := range r.Targets {
		var order []string
		byErr := map[string][]string{}
		for _, rd := range r.Rounds[t.Name] {
			if !rd.Failed() {
				continue
			}
			if _, ok := byErr[rd.Error]; !ok {
				order = append(order, rd.Error)
			}
			byErr[rd.Error] = append(byErr[rd.Error], strconv.Itoa(rd.Round))
		}
		for _, e := range order {
			word := "round"
			if len(byErr[e]) > 1 {
				word = "rounds"
			}
			out = append(out, fmt.Sprintf("%s %s %s failed: %s", t.Name, word, strings.Join(byErr[e], ","), e))
		}
	}
	return out
}

// Table writes the comparison as an aligned text table: one row per figure, for each target
// the median and min–max over its rounds, and for targets after the first the ratio of medians
// to the first. A target none of whose rounds measured anything reads UNREACHABLE (or FAILED);
// failed rounds are listed below the table.
func (r *Report) Table(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, r.title())
	for _, line := range r.grid() {
		fmt.Fprintln(tw, strings.Join(line, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range r.notes() {
		if _, err := fmt.Fprintln(w, "  "+n); err != nil {
			return err
		}
	}
	return nil
}

// Markdown writes the same table as Table in GitHub Markdown, for bench/results/*.md.
func (r *Report) Markdown(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "**%s**\n\n", mdEscape(r.title()))
	for i, line := range r.grid() {
		esc := make([]string, len(line))
		for j, c := range line {
			esc[j] = mdEscape(c)
			if c == "UNREACHABLE" || c == "FAILED" {
				esc[j] = "**" + c + "**"
			}
		}
		b.WriteString("| " + strings.Join(esc, " | ") + " |\n")
		if i == 0 {
			b.WriteString("|")
			for j := range line {
				if j < 2 {
					b.WriteString(" --- |")
				} else {
					b.WriteString(" ---: |")
				}
			}
			b.WriteString("\n")
		}
	}
	if notes := r.notes(); len(notes) > 0 {
		b.WriteString("\n")
		for _, n := range notes {
			b.WriteString("- " + mdEscape(n) + "\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func mdEscape(s string) string {
	return strings.NewReplacer("|", `\|`, "*", `\*`, "_", `\_`).Replace(s)
}

// jsonReport is the JSON form of a Report: everything measured, plus the medians (which
// ReadReport recomputes rather than trusts).
type jsonReport struct {
	Workload string                     `json:"workload"`
	Targets  []jsonTarget               `json:"targets"`
	Meta     map[string]string          `json:"meta,omitempty"`
	Rounds   map[string][]Round         `json:"rounds"`
	Medians  map[string]map[string]Stat `json:"medians"` // target -> figure -> stat
}

type jsonTarget struct {
	Name string `json:"name"`
	Addr string `json:"addr"`
}

// WriteJSON writes the report as indented JSON: every figure of every round of every target,
// failed rounds with their error, and under "medians" each target's median, min, max and ratio
// per figure.
func (r *Report) WriteJSON(w io.Writer) error {
	jr := jsonReport{
		Workload: r.Workload,
		Meta:     r.Meta,
		Rounds:   r.Rounds,
		Medians:  make(map[string]map[string]Stat, len(r.Targets)),
	}
	if jr.Rounds == nil {
		jr.Rounds = map[string][]Round{}
	}
	for _, t := range r.Targets {
		jr.Targets = append(jr.Targets, jsonTarget(t))
		jr.Medians[t.Name] = map[string]Stat{}
	}
	for _, row := range r.Rows() {
		for i, s := range row.Stats {
			if s.N > 0 {
				jr.Medians[r.Targets[i].Name][row.Name] = s
			}
		}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(jr)
}

// ReadReport reads a report written by WriteJSON.
func ReadReport(rd io.Reader) (*Report, error) {
	var jr jsonReport
	if err := json.NewDecoder(rd).Decode(&jr); err != nil {
		return nil, fmt.Errorf("read report: %w", err)
	}
	r := &Report{Workload: jr.Workload, Rounds: jr.Rounds, Meta: jr.Meta}
	for _, t := range jr.Targets {
		r.Targets = append(r.Targets, Target(t))
	}
	if r.Rounds == nil {
		r.Rounds = map[string][]Round{}
	}
	return r, nil
}
