package bench

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"slices"
)

// E2E plot geometry, in pixels.
const (
	e2eBarW     = 62
	e2eBarGap   = 16
	e2ePanelH   = 220
	e2ePanelTop = 40
	e2ePanelBot = 56
	e2eLeft     = 56
	e2ePad      = 28
	e2eTop      = 70
	e2ePerRow   = 3
)

// WritePlot writes an SVG bar chart: one panel per test (TCP in Gbit/s,
// UDP in thousands of datagrams received per second), one bar per
// implementation with whiskers from the fastest to the slowest
// repetition, and goipsec's ratio to each under its bar.
func (r *E2EReport) WritePlot(w io.Writer) error {
	tests := r.Settings.Tests
	var impls []string
	for _, n := range r.Settings.Impls {
		if slices.ContainsFunc(r.Results, func(x E2EResult) bool { return x.Impl == n }) {
			impls = append(impls, n)
		}
	}
	plotW := max(len(impls), 1)*(e2eBarW+e2eBarGap) + e2eBarGap
	cellW := e2eLeft + plotW + e2ePad
	cellH := e2ePanelTop + e2ePanelH + e2ePanelBot
	cols := min(max(len(tests), 1), e2ePerRow)
	rows := (max(len(tests), 1) + e2ePerRow - 1) / e2ePerRow
	width := max(cols*cellW+e2ePad, 760)
	height := e2eTop + rows*cellH

	b := bufio.NewWriter(w)
	p := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	p(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n", width, height, width, height)
	p(`<style>.axis{stroke:#333;stroke-width:1}.grid{stroke:#e3e3e3;stroke-width:1}.whisker{stroke:#333;stroke-width:1}.t{fill:#222}</style>` + "\n")
	p(`<rect x="0" y="0" width="%d" height="%d" fill="#fff"/>`+"\n", width, height)
	p(`<text class="t" x="%d" y="20" font-size="15" font-weight="bold">%s</text>`+"\n", e2ePad, esc(fmt.Sprintf(
		"goipsec bench e2e: two namespaces over a veth, median of %d reps (whiskers: min to max)", r.Settings.Reps)))
	p(`<text class="t" x="%d" y="36" font-size="10">%s</text>`+"\n", e2ePad, esc(r.Machine.String()))
	lx := e2ePad
	for _, n := range impls {
		p(`<rect x="%d" y="46" width="12" height="12" fill="%s"/><text class="t" x="%d" y="56">%s</text>`+"\n", lx, implColor(n), lx+16, esc(n))
		lx += 30 + 7*len(n)
	}
	p(`<text class="t" x="%d" y="56">under each bar: goipsec's ratio to it</text>`+"\n", lx+10)

	for ti, t := range tests {
		x0 := e2ePad + (ti%e2ePerRow)*cellW + e2eLeft
		y0 := e2eTop + (ti/e2ePerRow)*cellH + e2ePanelTop
		unit := "Gbit/s"
		pick := func(x *E2EResult) Stat { return x.Gbps }
		if t.Proto == "udp" {
			unit = "kpps received"
			pick = func(x *E2EResult) Stat { return x.Kpps }
		}
		top := 0.0
		for _, n := range impls {
			if x := r.Result(t.Name(), n); x != nil {
				st := pick(x)
				top = max(top, finite(st.Max), finite(st.Median))
			}
		}
		ymax, step := niceScale(top)
		p("<g>\n")
		p(`<text class="t" x="%d" y="%d" font-size="12" font-weight="bold">%s</text>`+"\n", x0, y0-14, esc(t.Title()))
		for v := 0.0; v <= ymax*(1+1e-9); v += step {
			y := y0 + e2ePanelH - int(math.Round(v/ymax*e2ePanelH))
			p(`<line class="grid" x1="%d" y1="%d" x2="%d" y2="%d"/><text class="t" x="%d" y="%d" text-anchor="end">%s</text>`+"\n",
				x0, y, x0+plotW, y, x0-6, y+4, esc(tickLabel(v, step)))
		}
		p(`<text class="t" transform="translate(%d,%d) rotate(-90)" text-anchor="middle">%s</text>`+"\n", x0-42, y0+e2ePanelH/2, esc(unit))
		p(`<line class="axis" x1="%d" y1="%d" x2="%d" y2="%d"/>`+"\n", x0, y0, x0, y0+e2ePanelH)
		p(`<line class="axis" x1="%d" y1="%d" x2="%d" y2="%d"/>`+"\n", x0, y0+e2ePanelH, x0+plotW, y0+e2ePanelH)
		scale := func(v float64) int { return int(math.Round(finite(v) / ymax * e2ePanelH)) }
		for ii, n := range impls {
			x := r.Result(t.Name(), n)
			bx := x0 + e2eBarGap + ii*(e2eBarW+e2eBarGap)
			cx := bx + e2eBarW/2
			p(`<text class="t" x="%d" y="%d" text-anchor="middle" font-size="10">%s</text>`+"\n", cx, y0+e2ePanelH+14, esc(n))
			if x == nil || x.Err != "" {
				p(`<text class="t" x="%d" y="%d" text-anchor="middle" font-size="10">%s</text>`+"\n", cx, y0+e2ePanelH-4, "n/a")
				continue
			}
			st := pick(x)
			h := scale(st.Median)
			tip := fmt.Sprintf("%s %s: %s %s [%s-%s]", t.Name(), n, sig(st.Median), unit, sig(st.Min), sig(st.Max))
			if x.Ratio > 0 {
				tip += fmt.Sprintf(", goipsec/%s %s", n, times(x.Ratio))
			}
			p(`<rect class="bar" x="%d" y="%d" width="%d" height="%d" fill="%s"><title>%s</title></rect>`+"\n",
				bx, y0+e2ePanelH-h, e2eBarW, h, implColor(n), esc(tip))
			if lo, hi := scale(st.Min), scale(st.Max); hi > lo {
				p(`<line class="whisker" x1="%d" y1="%d" x2="%d" y2="%d"/>`+"\n", cx, y0+e2ePanelH-hi, cx, y0+e2ePanelH-lo)
			}
			p(`<text class="t" x="%d" y="%d" text-anchor="middle" font-size="10">%s</text>`+"\n", cx, y0+e2ePanelH-max(h, scale(st.Max))-4, esc(sig(st.Median)))
			if n != ImplGoipsec && x.Ratio > 0 {
				p(`<text class="t" x="%d" y="%d" text-anchor="middle" font-size="10">%s</text>`+"\n", cx, y0+e2ePanelH+28, esc(times(x.Ratio)))
			}
		}
		p("</g>\n")
	}
	p("</svg>\n")
	return b.Flush()
}

// implColor is an implementation's bar colour.
func implColor(name string) string {
	i := slices.Index(allImpls, name)
	if i < 0 {
		i = len(palette) - 1
	}
	return palette[i%len(palette)]
}
