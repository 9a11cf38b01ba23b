package bench

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// Chart geometry, in SVG user units (pixels).
const (
	svgWidth       = 960
	svgPlotLeft    = 78  // room for the y-axis labels
	svgPlotRight   = 24  // margin right of the plot
	svgHeaderH     = 92  // title, subtitle and legend
	svgPanelH      = 270 // one panel: title, plot and x labels
	svgPanelTitleH = 34
	svgXLabelH     = 34
	svgFooterH     = 16
	svgBarMaxW     = 56
	svgFont        = `system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif`
)

// svgPalette colours targets in order: the first (the reference) blue, then orange, green, ...
var svgPalette = []string{"#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#9D755D", "#BAB0AC"}

// svgSeries splits a figure name into a family and a member: latency_p99 is p99 of latency.
var svgSeries = regexp.MustCompile(`^(.*)_(p\d+(?:\.\d+)?|max|min|mean)$`)

// svgFamilyTitles name the families the workloads use; others are their name with spaces.
var svgFamilyTitles = map[string]string{
	"latency":         "Consumer latency",
	"confirm_latency": "Confirm latency",
	"handshake":       "Handshake time",
}

// svgPanel is one chart of the SVG: figures of one unit (and family), on one axis.
type svgPanel struct {
	title  string
	unit   string
	higher bool
	labels []string
	rows   []Row
	log    bool
}

// panels groups rows into charts: figures named FAMILY_pNN / FAMILY_max share a panel per
// family, the others a panel per unit. Figures no target measured above zero are left out (an
// error count that stayed at 0 says nothing in a bar chart).
func (r *Report) panels() []*svgPanel {
	var out []*svgPanel
	byKey := map[string]*svgPanel{}
	for _, row := range r.Rows() {
		if !rowHasValue(row) {
			continue
		}
		family, label := "", row.Name
		if m := svgSeries.FindStringSubmatch(row.Name); m != nil {
			family, label = m[1], m[2]
		}
		key := row.Unit + "\x00" + family
		p := byKey[key]
		if p == nil {
			title := svgFamilyTitles[family]
			if title == "" && family != "" {
				title = strings.ReplaceAll(family, "_", " ")
				title = strings.ToUpper(title[:1]) + title[1:]
			}
			if title == "" {
				title = unitTitle(row.Unit)
			}
			p = &svgPanel{title: title, unit: row.Unit, higher: row.Higher}
			byKey[key] = p
			out = append(out, p)
		}
		p.rows = append(p.rows, row)
		p.labels = append(p.labels, strings.ReplaceAll(label, "_", " "))
	}
	for _, p := range out {
		lo, hi := math.Inf(1), 0.0
		for _, row := range p.rows {
			for _, s := range row.Stats {
				if s.N > 0 && s.Min > 0 {
					lo = min(lo, s.Min)
				}
				hi = max(hi, s.Max)
			}
		}
		// Latencies spread over decades (p50 of 1ms, max of 300ms): a log axis keeps p50 visible.
		p.log = p.unit == "ms" && hi/lo > 40
	}
	return out
}

func rowHasValue(row Row) bool {
	for _, s := range row.Stats {
		if s.N > 0 && s.Max != 0 {
			return true
		}
	}
	return false
}

func unitTitle(unit string) string {
	switch {
	case strings.HasSuffix(unit, "/s"):
		return "Throughput"
	case unit == "count":
		return "Counts"
	case unit == "ms":
		return "Time"
	}
	return unit
}

// WriteSVG draws the report as a self-contained SVG chart for a README: one panel per kind of
// figure (throughputs, each latency's percentiles, error counts), in each a group of bars per
// figure, one bar per target at its median with a whisker from min to max over the rounds,
// labelled with the median. Latency panels whose values span decades use a log axis.
func (r *Report) WriteSVG(w io.Writer) error {
	panels := r.panels()
	height := svgHeaderH + max(len(panels), 1)*svgPanelH + svgFooterH
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="%s">`+"\n",
		svgWidth, height, svgWidth, height, svgFont)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="#ffffff"/>`+"\n")
	r.svgHeader(&b)
	if len(panels) == 0 {
		svgText(&b, svgWidth/2, svgHeaderH+svgPanelH/2, "middle", 14, "#666", "", "no figures: every round failed")
	}
	for i, p := range panels {
		r.svgPanel(&b, p, svgHeaderH+i*svgPanelH)
	}
	b.WriteString("</svg>\n")
	_, err := w.Write(b.Bytes())
	return err
}

func (r *Report) svgHeader(b *bytes.Buffer) {
	rounds := 0
	for _, t := range r.Targets {
		rounds = max(rounds, len(r.Rounds[t.Name]))
	}
	svgText(b, 20, 30, "start", 20, "#222", "bold", "amqplb-bench "+r.Workload)
	sub := fmt.Sprintf("Median of %d round(s) per target, rounds alternating between targets; whiskers span min–max", rounds)
	svgText(b, 20, 52, "start", 13, "#555", "", sub)
	x := 20.0
	for i, t := range r.Targets {
		label := t.Name
		if st := r.Status(t.Name); st.Down() {
			if st.Unreachable == st.Rounds {
				label += " (unreachable)"
			} else {
				label += " (failed)"
			}
		} else if st.Failed > 0 {
			label += fmt.Sprintf(" (%d/%d rounds failed)", st.Failed, st.Rounds)
		}
		if r.Status(t.Name).Down() { // no bars: an outlined swatch
			fmt.Fprintf(b, `<rect x="%.1f" y="66.5" width="13" height="13" rx="2" fill="#ffffff" stroke="%s" stroke-width="1.5"/>`+"\n", x, svgColor(i))
		} else {
			fmt.Fprintf(b, `<rect x="%.1f" y="66" width="14" height="14" rx="2" fill="%s"/>`+"\n", x, svgColor(i))
		}
		svgText(b, x+20, 78, "start", 13, "#222", "", label)
		x += 20 + float64(len([]rune(label)))*7.4 + 20
	}
}

// ratioNote is a bar's tooltip note of its ratio to the first target.
func ratioNote(s Stat, targets []Target) string {
	if s.Ratio == 0 || len(targets) == 0 {
		return ""
	}
	return xmlEscape(fmt.Sprintf(", %.2fx %s", s.Ratio, targets[0].Name))
}

func svgColor(i int) string { return svgPalette[i%len(svgPalette)] }

// svgAxis maps values to y in a panel's plot.
type svgAxis struct {
	log         bool
	lo, hi      float64 // axis range (log10 of it on a log axis)
	top, bottom float64
	ticks       []float64
}

func newSVGAxis(p *svgPanel, top, bottom float64) svgAxis {
	a := svgAxis{log: p.log, top: top, bottom: bottom}
	hi, lo := 0.0, math.Inf(1)
	for _, row := range p.rows {
		for _, s := range row.Stats {
			if s.N == 0 {
				continue
			}
			hi = max(hi, s.Max)
			if s.Min > 0 {
				lo = min(lo, s.Min)
			}
		}
	}
	if a.log {
		a.lo, a.hi = math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
		if a.hi <= a.lo {
			a.hi = a.lo + 1
		}
		for e := a.lo; e <= a.hi; e++ {
			a.ticks = append(a.ticks, math.Pow(10, e))
		}
		return a
	}
	step := niceStep(hi / 5)
	a.lo, a.hi = 0, math.Ceil(hi/step)*step
	if a.hi <= 0 {
		a.hi, step = 1, 0.2
	}
	// Keep a little room above the highest whisker for its label.
	if hi > a.hi-step/4 {
		a.hi += step
	}
	for v := 0.0; v <= a.hi+step/1e6; v += step {
		a.ticks = append(a.ticks, v)
	}
	return a
}

// niceStep rounds x up to 1, 2 or 5 times a power of ten.
func niceStep(x float64) float64 {
	if x <= 0 || math.IsNaN(x) || math.IsInf(x, 0) {
		return 1
	}
	mag := math.Pow(10, math.Floor(math.Log10(x)))
	for _, m := range []float64{1, 2, 5, 10} {
		if x <= m*mag*(1+1e-9) {
			return m * mag
		}
	}
	return 10 * mag
}

// y maps v to its y coordinate; values below the axis sit on its bottom.
func (a svgAxis) y(v float64) float64 {
	f := 0.0
	if a.log {
		if v > 0 {
			f = (math.Log10(v) - a.lo) / (a.hi - a.lo)
		}
	} else {
		f = (v - a.lo) / (a.hi - a.lo)
	}
	f = min(max(f, 0), 1)
	return a.bottom - f*(a.bottom-a.top)
}

// compactNumber prints tick labels: 12k, 1.5M, 0.25.
func compactNumber(v float64) string {
	abs := math.Abs(v)
	trim := func(s string) string {
		if strings.Contains(s, ".") {
			s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
		}
		return s
	}
	switch {
	case abs >= 1e9:
		return trim(strconv.FormatFloat(v/1e9, 'f', 2, 64)) + "G"
	case abs >= 1e6:
		return trim(strconv.FormatFloat(v/1e6, 'f', 2, 64)) + "M"
	case abs >= 1e3:
		return trim(strconv.FormatFloat(v/1e3, 'f', 1, 64)) + "k"
	case abs >= 1 || v == 0:
		return trim(strconv.FormatFloat(v, 'f', 2, 64))
	}
	return trim(strconv.FormatFloat(v, 'f', 4, 64))
}

func (r *Report) svgPanel(b *bytes.Buffer, p *svgPanel, y0 int) {
	left, right := float64(svgPlotLeft), float64(svgWidth-svgPlotRight)
	top := float64(y0 + svgPanelTitleH + 10)
	bottom := float64(y0 + svgPanelH - svgXLabelH)
	better := "lower is better"
	if p.higher {
		better = "higher is better"
	}
	scale := ""
	if p.log {
		scale = ", log scale"
	}
	// One <text> of two spans: the renderer places the note after the title, whatever the font.
	fmt.Fprintf(b, `<text x="20" y="%d" font-size="15" fill="#222"><tspan font-weight="bold">%s</tspan><tspan dx="10" font-size="12" fill="#666">%s</tspan></text>`+"\n",
		y0+22, xmlEscape(p.title), xmlEscape(fmt.Sprintf("%s — %s%s", p.unit, better, scale)))

	a := newSVGAxis(p, top, bottom)
	for _, tv := range a.ticks {
		ty := a.y(tv)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e6e6e6" stroke-width="1"/>`+"\n", left, ty, right, ty)
		svgText(b, left-8, ty+4, "end", 11, "#666", "", compactNumber(tv))
	}
	fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#888" stroke-width="1"/>`+"\n", left, bottom, right, bottom)
	// The unit along the y axis.
	fmt.Fprintf(b, `<text x="%d" y="%.1f" transform="rotate(-90 %d %.1f)" text-anchor="middle" font-size="11" fill="#666">%s</text>`+"\n",
		18, (top+bottom)/2, 18, (top+bottom)/2, xmlEscape(p.unit))

	nT := max(len(r.Targets), 1)
	groupW := (right - left) / float64(len(p.rows))
	barW := min(groupW*0.72/float64(nT), svgBarMaxW)
	for gi, row := range p.rows {
		cx := left + groupW*(float64(gi)+0.5)
		x0 := cx - barW*float64(nT)/2
		for ti, s := range row.Stats {
			bx := x0 + barW*float64(ti)
			mid := bx + barW/2
			if s.N == 0 {
				if barW >= 16 {
					svgText(b, mid, bottom-4, "middle", 9, "#999", "", "n/a")
				}
				continue
			}
			by := a.y(s.Median)
			fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s %s: median %s %s (min %s, max %s, %d rounds)%s</title></rect>`+"\n",
				bx+1, by, barW-2, bottom-by, svgColor(ti), xmlEscape(r.Targets[ti].Name), xmlEscape(row.Name),
				formatValue(s.Median), xmlEscape(row.Unit), formatValue(s.Min), formatValue(s.Max), s.N, ratioNote(s, r.Targets))
			labelY := by
			if s.Max > s.Min {
				wl, wh := a.y(s.Min), a.y(s.Max)
				capW := min(barW*0.3, 8)
				fmt.Fprintf(b, `<path d="M%.1f %.1fV%.1fM%.1f %.1fH%.1fM%.1f %.1fH%.1f" stroke="#333" stroke-width="1.2" fill="none"/>`+"\n",
					mid, wl, wh, mid-capW, wl, mid+capW, mid-capW, wh, mid+capW)
				labelY = min(labelY, wh)
			}
			label := formatValue(s.Median)
			if float64(len(label))*6+2 <= barW+6 {
				svgText(b, mid, labelY-4, "middle", 10, "#333", "", label)
			}
		}
		svgText(b, cx, bottom+18, "middle", 12, "#333", "", p.labels[gi])
	}
}

// svgText writes one <text> element.
func svgText(b *bytes.Buffer, x, y any, anchor string, size int, fill, weight, s string) {
	fmt.Fprintf(b, `<text x="%s" y="%s" text-anchor="%s" font-size="%d" fill="%s"`, svgNum(x), svgNum(y), anchor, size, fill)
	if weight != "" {
		fmt.Fprintf(b, ` font-weight="%s"`, weight)
	}
	fmt.Fprintf(b, ">%s</text>\n", xmlEscape(s))
}

func svgNum(v any) string {
	switch v := v.(type) {
	case int:
		return strconv.Itoa(v)
	case float64:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return fmt.Sprint(v)
}

func xmlEscape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}
