package bench

import (
	"bytes"
	"fmt"
	"html"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"time"
)

// Geometry and colours of the rolling-restart chart (the failover chart's style).
const (
	rlCountHeight = 150 // per-node counts
	rlEventHeight = 36  // closes and failed connects per second, below
	rlStepInk     = "#868e96"
)

// rlNodeColours draw the nodes, in order.
var rlNodeColours = []string{"#1c7ed6", "#2f9e44", "#f08c00", "#ae3ec9", "#0ca678", "#e03131"}

// WriteRollingSVG draws rolling-restart timelines, one panel per target on a shared time axis
// and shared scales: each node's connection count as a line (gaps where the node did not
// answer), the steps as dashed lines with their labels, and below the axis the closes (red)
// and failed connects (grey) per second. Panels come in the order named by order, then the
// remaining targets sorted by name; of several rounds, the last one is drawn.
func WriteRollingSVG(w io.Writer, rounds map[string][]*RollingTimeline, order ...string) error {
	var panels []*RollingTimeline
	for _, n := range panelOrder(rounds, order) {
		if tls := rounds[n]; len(tls) > 0 && tls[len(tls)-1] != nil {
			panels = append(panels, tls[len(tls)-1])
		}
	}
	var span time.Duration
	most, mostEv := 1, 1
	for _, tl := range panels {
		span = max(span, tl.Duration)
		for _, s := range tl.Samples {
			span = max(span, s.At)
			most = max(most, slices.Max(append([]int{0}, s.Counts...)))
		}
		for _, c := range eventsPerSecond(tl) {
			mostEv = max(mostEv, c[0]+c[1])
		}
	}
	if span <= 0 {
		span = time.Second
	}
	top := niceCeil(most)
	evTop := niceCeil(mostEv)
	panelH := tlPanelHead + 40 + rlCountHeight + rlEventHeight + tlPanelFoot
	height := tlTop + len(panels)*(panelH+tlPanelGap) + tlBottom
	plotW := float64(tlWidth - tlLeft - tlRight)
	x := func(d time.Duration) float64 { return tlLeft + plotW*d.Seconds()/span.Seconds() }

	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="Helvetica, Arial, sans-serif" font-size="12">`+"\n",
		tlWidth, height, tlWidth, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#ffffff"/>`+"\n", tlWidth, height)
	fmt.Fprintf(&b, `<text x="%d" y="24" font-size="16" font-weight="bold" fill="#212529">Rolling restart: client connections per node (from the brokers)</text>`+"\n", tlLeft)
	var nodes []string
	for _, tl := range panels {
		for _, n := range tl.Nodes {
			if !slices.Contains(nodes, n) {
				nodes = append(nodes, n)
			}
		}
	}
	lx := tlLeft
	for i, n := range nodes {
		fmt.Fprintf(&b, `<rect x="%d" y="38" width="12" height="12" fill="%s"/><text x="%d" y="48" fill="#343a40">%s</text>`+"\n",
			lx, rlNodeColours[i%len(rlNodeColours)], lx+16, html.EscapeString(n))
		lx += 30 + 8*len(n)
	}
	fmt.Fprintf(&b, `<rect x="%d" y="38" width="12" height="12" fill="%s"/><text x="%d" y="48" fill="#343a40">closes/s</text>`+"\n", lx, tlFailColour, lx+16)
	lx += 90
	fmt.Fprintf(&b, `<rect x="%d" y="38" width="12" height="12" fill="%s"/><text x="%d" y="48" fill="#343a40">failed connects/s</text>`+"\n", lx, rlStepInk, lx+16)

	tick := niceTick(span)
	for p, tl := range panels {
		ptop := float64(tlTop + p*(panelH+tlPanelGap))
		plotTop := ptop + tlPanelHead + 40
		base := plotTop + rlCountHeight
		bottom := base + rlEventHeight
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" fill="#495057"><tspan font-size="14" font-weight="bold" fill="#212529">%s</tspan>   %s</text>`+"\n",
			tlLeft, ptop+15, html.EscapeString(tl.Target), html.EscapeString(rollingCaption(tl)))
		fmt.Fprintf(&b, `<rect x="%d" y="%.1f" width="%.1f" height="%d" fill="#f8f9fa"/>`+"\n", tlLeft, plotTop, plotW, rlCountHeight+rlEventHeight)
		for t := time.Duration(0); t <= span; t += tick {
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#dee2e6"/>`, x(t), plotTop, x(t), bottom)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#495057">%gs</text>`+"\n", x(t), bottom+15, t.Seconds())
		}
		// The even share, for reference.
		if len(tl.Nodes) > 0 {
			share := float64(tl.Clients) / float64(len(tl.Nodes))
			y := base - share/float64(top)*rlCountHeight
			fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#adb5bd" stroke-dasharray="2 3"/>`+"\n", tlLeft, y, tlLeft+plotW, y)
		}
		// Steps.
		for i, st := range tl.Steps {
			ink := rlStepInk
			if st.Err != "" {
				ink = tlFaultInk
			}
			sx := x(st.At)
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-dasharray="4 3"/>`, sx, plotTop, sx, bottom, ink)
			ly := ptop + tlPanelHead - 8 + float64(i%3)*13
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="%s" font-size="10">%s</text>`+"\n", sx+2, ly, ink, html.EscapeString(st.Label))
		}
		// Counts: one polyline per run of answered samples.
		for ni := range tl.Nodes {
			colour := rlNodeColours[slices.Index(nodes, tl.Nodes[ni])%len(rlNodeColours)]
			var pts []string
			flush := func() {
				if len(pts) > 0 {
					fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", colour, strings.Join(pts, " "))
				}
				pts = pts[:0]
			}
			for _, s := range tl.Samples {
				if ni >= len(s.Counts) || s.Counts[ni] < 0 {
					flush()
					continue
				}
				y := base - float64(s.Counts[ni])/float64(top)*rlCountHeight
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(s.At), y))
			}
			flush()
		}
		// Events per second, below the axis.
		bw := math.Max(x(time.Second)-x(0)-0.6, 0.6)
		for sec, c := range eventsPerSecond(tl) {
			bx := x(time.Duration(sec) * time.Second)
			y := base
			for k, ink := range []string{tlFailColour, rlStepInk} {
				if c[k] == 0 {
					continue
				}
				h := math.Max(float64(c[k])/float64(evTop)*rlEventHeight, 1)
				fmt.Fprintf(&b, `<rect x="%.2f" y="%.2f" width="%.2f" height="%.2f" fill="%s"/>`, bx, y, bw, h, ink)
				y += h
			}
		}
		b.WriteString("\n")
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#495057"/>`+"\n", tlLeft, base, tlLeft+plotW, base)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" fill="#495057">%d conns</text>`, tlLeft-6, plotTop+10, top)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" fill="#495057">0</text>`, tlLeft-6, base+4)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" fill="%s">%d/s</text>`+"\n", tlLeft-6, bottom, tlFailColour, evTop)
	}
	b.WriteString("</svg>\n")
	_, err := w.Write(b.Bytes())
	return err
}

// rollingCaption summarises a timeline for its panel.
func rollingCaption(tl *RollingTimeline) string {
	var parts []string
	parts = append(parts, fmt.Sprintf("%d clients, %d reconnects, %d failed connects", tl.Clients, tl.Reconnects, tl.FailedConnects))
	var closes []string
	for _, k := range slices.Sorted(maps.Keys(tl.Closes)) {
		closes = append(closes, fmt.Sprintf("%s×%d", k, tl.Closes[k]))
	}
	if len(closes) > 0 {
		parts = append(parts, "closes "+strings.Join(closes, " "))
	}
	if f, ok := tl.Final(); ok {
		var cs []string
		for _, c := range f.Counts {
			cs = append(cs, fmt.Sprint(c))
		}
		end := "end " + strings.Join(cs, "/")
		if d, ok := tl.EvenAfter(); ok {
			end += fmt.Sprintf(", even %.1f s after the last step", d.Seconds())
		} else {
			end += ", not even"
		}
		parts = append(parts, end)
	}
	return strings.Join(parts, "; ")
}

// eventsPerSecond counts the closes ([0]) and failed connects ([1]) of each second.
func eventsPerSecond(tl *RollingTimeline) [][2]int {
	var out [][2]int
	for _, e := range tl.Events {
		k := -1
		switch e.Kind {
		case EventClose:
			k = 0
		case EventFailed:
			k = 1
		}
		if k < 0 || e.At < 0 {
			continue
		}
		sec := int(e.At / time.Second)
		for len(out) <= sec {
			out = append(out, [2]int{})
		}
		out[sec][k]++
	}
	return out
}
