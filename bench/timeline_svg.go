package bench

import (
	"bytes"
	"cmp"
	"fmt"
	"html"
	"io"
	"maps"
	"math"
	"slices"
	"time"
)

// Geometry and colours of the failover chart.
const (
	tlWidth      = 960
	tlLeft       = 64 // room for the y labels
	tlRight      = 24 // right margin
	tlTop        = 64 // title and legend
	tlPanelHead  = 38 // a panel's caption and the event labels
	tlOKHeight   = 90 // successes, above the baseline
	tlFailHeight = 50 // failures, below it
	tlPanelFoot  = 30 // the time axis
	tlPanelGap   = 14 // between panels
	tlBottom     = 16 // below the last panel
	tlOKColour   = "#2f9e44"
	tlFailColour = "#d9480f"
	tlFaultInk   = "#c92a2a"
	tlRecoverInk = "#1c7ed6"
	tlOutageFill = "#fab005"
)

// WriteTimelineSVG draws failover timelines as an SVG chart, one panel per target stacked on a
// shared time axis and shared scales: attempts that succeeded per bucket as green bars above
// the baseline, failed ones as red bars below it, the fault and the recovery command as dashed
// lines, and the time to recover as a shaded band with its length. Panels come in the order
// named by order, then the remaining targets sorted by name. Nil timelines are skipped.
func WriteTimelineSVG(w io.Writer, timelines map[string]*Timeline, order ...string) error {
	var panels []timelinePanel
	for _, n := range panelOrder(timelines, order) {
		if tl := timelines[n]; tl != nil {
			panels = append(panels, timelinePanel{label: n, tl: tl})
		}
	}
	return writeTimelineSVG(w, panels)
}

// WriteTimelinesSVG draws the timelines of several rounds (Failover.Timelines) like
// WriteTimelineSVG, one panel per target: the round whose recovery was the median one (a
// round that never recovered counting as the slowest), labelled with its number.
func WriteTimelinesSVG(w io.Writer, rounds map[string][]*Timeline, order ...string) error {
	var panels []timelinePanel
	for _, n := range panelOrder(rounds, order) {
		tls := rounds[n]
		if len(tls) == 0 {
			continue
		}
		idx := make([]int, 0, len(tls))
		for i, tl := range tls {
			if tl != nil {
				idx = append(idx, i)
			}
		}
		if len(idx) == 0 {
			continue
		}
		key := func(i int) time.Duration {
			if d, ok := tls[i].Recovery(); ok {
				return d
			}
			return math.MaxInt64
		}
		slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(key(a), key(b)) })
		i := idx[(len(idx)-1)/2]
		label := n
		if len(tls) > 1 {
			label = fmt.Sprintf("%s (round %d of %d, the median recovery)", n, i+1, len(tls))
		}
		panels = append(panels, timelinePanel{label: label, tl: tls[i]})
	}
	return writeTimelineSVG(w, panels)
}

// panelOrder lists the keys of m: those in order first, then the rest sorted.
func panelOrder[V any](m map[string]V, order []string) []string {
	var names []string
	for _, n := range order {
		if _, ok := m[n]; ok && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	for _, n := range slices.Sorted(maps.Keys(m)) {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names
}

// timelinePanel is one panel of the failover chart.
type timelinePanel struct {
	label string
	tl    *Timeline
}

func writeTimelineSVG(w io.Writer, panels []timelinePanel) error {
	var span time.Duration
	var bucket time.Duration
	mostOK, mostFail := 1, 1
	for _, p := range panels {
		tl := p.tl
		span = max(span, time.Duration(len(tl.Buckets))*tl.Bucket)
		if bucket == 0 || tl.Bucket < bucket {
			bucket = tl.Bucket
		}
		for _, b := range tl.Buckets {
			mostOK = max(mostOK, b.Successes)
			mostFail = max(mostFail, b.Failures)
		}
	}
	if span <= 0 {
		span, bucket = time.Second, 100*time.Millisecond
	}
	okTop, failTop := niceCeil(mostOK), niceCeil(mostFail)
	panelH := tlPanelHead + tlOKHeight + tlFailHeight + tlPanelFoot
	height := tlTop + len(panels)*(panelH+tlPanelGap) + tlBottom
	plotW := float64(tlWidth - tlLeft - tlRight)
	x := func(d time.Duration) float64 { return tlLeft + plotW*d.Seconds()/span.Seconds() }

	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="Helvetica, Arial, sans-serif" font-size="12">`+"\n",
		tlWidth, height, tlWidth, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#ffffff"/>`+"\n", tlWidth, height)
	fmt.Fprintf(&b, `<text x="%d" y="24" font-size="16" font-weight="bold" fill="#212529">Failover: connection attempts per %v, by start time</text>`+"\n", tlLeft, bucket)
	// Legend.
	lx := tlLeft
	legend := []struct{ colour, text string }{{tlOKColour, "succeeded"}, {tlFailColour, "failed"}}
	for _, l := range legend {
		fmt.Fprintf(&b, `<rect x="%d" y="38" width="12" height="12" fill="%s"/><text x="%d" y="48" fill="#343a40">%s</text>`+"\n", lx, l.colour, lx+16, l.text)
		lx += 100
	}
	fmt.Fprintf(&b, `<line x1="%d" y1="44" x2="%d" y2="44" stroke="%s" stroke-width="2" stroke-dasharray="5 3"/><text x="%d" y="48" fill="#343a40">fault</text>`+"\n", lx, lx+20, tlFaultInk, lx+26)
	lx += 80
	fmt.Fprintf(&b, `<line x1="%d" y1="44" x2="%d" y2="44" stroke="%s" stroke-width="2" stroke-dasharray="5 3"/><text x="%d" y="48" fill="#343a40">recovery</text>`+"\n", lx, lx+20, tlRecoverInk, lx+26)
	lx += 90
	fmt.Fprintf(&b, `<rect x="%d" y="38" width="20" height="12" fill="%s" fill-opacity="0.25"/><text x="%d" y="48" fill="#343a40">outage: fault → first clean bucket</text>`+"\n", lx, tlOutageFill, lx+26)

	tick := niceTick(span)
	for p, panel := range panels {
		tl, n := panel.tl, panel.label
		top := float64(tlTop + p*(panelH+tlPanelGap))
		base := top + tlPanelHead + tlOKHeight
		bottom := base + tlFailHeight
		ok, failed := tl.Totals()
		caption := fmt.Sprintf("%d ok, %d failed", ok, failed)
		if rec, recovered := tl.Recovery(); tl.FaultAt >= 0 {
			if recovered {
				caption += fmt.Sprintf(", recovered %.1f s after the fault", rec.Seconds())
			} else {
				caption += ", not recovered"
			}
		}
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" fill="#495057"><tspan font-size="14" font-weight="bold" fill="#212529">%s</tspan>   %s</text>`+"\n",
			tlLeft, top+15, html.EscapeString(n), html.EscapeString(caption))
		// Plot area and grid.
		fmt.Fprintf(&b, `<rect x="%d" y="%.1f" width="%.1f" height="%d" fill="#f8f9fa"/>`+"\n", tlLeft, top+tlPanelHead, plotW, tlOKHeight+tlFailHeight)
		for t := time.Duration(0); t <= span; t += tick {
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#dee2e6"/>`, x(t), top+tlPanelHead, x(t), bottom)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#495057">%gs</text>`+"\n", x(t), bottom+15, t.Seconds())
		}
		// Outage band, under the bars; its label goes on top of them, below.
		bandEnd, bandLabel := time.Duration(-1), ""
		if rec, recovered := tl.Recovery(); tl.FaultAt >= 0 {
			bandEnd, bandLabel = tl.FaultAt+rec, fmt.Sprintf("%.1f s", rec.Seconds())
			if !recovered {
				bandEnd, bandLabel = span, "not recovered"
			}
			if bandEnd > tl.FaultAt {
				fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%d" fill="%s" fill-opacity="0.25"/>`+"\n",
					x(tl.FaultAt), top+tlPanelHead, x(bandEnd)-x(tl.FaultAt), tlOKHeight+tlFailHeight, tlOutageFill)
			}
		}
		// Bars.
		bw := math.Max(x(tl.Bucket)-x(0)-0.6, 0.6)
		for i, bk := range tl.Buckets {
			bx := x(time.Duration(i) * tl.Bucket)
			if bk.Successes > 0 {
				h := math.Max(float64(bk.Successes)/float64(okTop)*tlOKHeight, 1)
				fmt.Fprintf(&b, `<rect x="%.2f" y="%.2f" width="%.2f" height="%.2f" fill="%s"/>`, bx, base-h, bw, h, tlOKColour)
			}
			if bk.Failures > 0 {
				h := math.Max(float64(bk.Failures)/float64(failTop)*tlFailHeight, 1)
				fmt.Fprintf(&b, `<rect x="%.2f" y="%.2f" width="%.2f" height="%.2f" fill="%s"/>`, bx, base, bw, h, tlFailColour)
			}
		}
		b.WriteString("\n")
		// Baseline and y labels.
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#495057"/>`+"\n", tlLeft, base, tlLeft+plotW, base)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" fill="%s">%d ok</text>`, tlLeft-6, top+tlPanelHead+10, tlOKColour, okTop)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" fill="#495057">0</text>`, tlLeft-6, base+4)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" fill="%s">%d failed</text>`+"\n", tlLeft-6, bottom, tlFailColour, failTop)
		// Events.
		for _, ev := range []struct {
			at     time.Duration
			colour string
			label  string
		}{{tl.FaultAt, tlFaultInk, "fault"}, {tl.RecoverAt, tlRecoverInk, "recovery"}} {
			if ev.at < 0 {
				continue
			}
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2" stroke-dasharray="5 3"/>`,
				x(ev.at), top+tlPanelHead-4, x(ev.at), bottom, ev.colour)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="%s" font-size="11">%s</text>`+"\n", x(ev.at), top+tlPanelHead-6, ev.colour, ev.label)
		}
		if bandLabel != "" {
			// After the band's end, or inside it when there is no room to the right.
			lx, anchor := x(bandEnd)+5, "start"
			if lx+7*float64(len(bandLabel)) > tlLeft+plotW {
				lx, anchor = x(bandEnd)-5, "end"
			}
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="%s" fill="#862e9c" font-weight="bold" stroke="#ffffff" stroke-width="3" paint-order="stroke">%s</text>`+"\n",
				lx, top+tlPanelHead+16, anchor, bandLabel)
		}
	}
	b.WriteString("</svg>\n")
	_, err := w.Write(b.Bytes())
	return err
}

// niceCeil rounds n up to 1, 2 or 5 times a power of ten, for an axis maximum.
func niceCeil(n int) int {
	p := 1
	for {
		for _, m := range []int{1, 2, 5} {
			if m*p >= n {
				return m * p
			}
		}
		p *= 10
	}
}

// niceTick picks a tick interval giving 5 to 20 ticks over span.
func niceTick(span time.Duration) time.Duration {
	for _, t := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 500 * time.Millisecond,
		time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second, time.Minute, 5 * time.Minute} {
		if span/t <= 20 {
			return t
		}
	}
	return 10 * time.Minute
}
