package bench

import (
	"bufio"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// palette holds the bar colours, one per packet size (Okabe-Ito, readable
// with colour blindness).
var palette = []string{"#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"}

// Plot geometry, in pixels.
const (
	barW      = 10
	barGap    = 2
	groupGap  = 18
	panelH    = 200 // plot area height
	panelTop  = 34  // panel title and headroom
	panelLeft = 52  // y axis labels
	panelBot  = 92  // rotated transform names
	panelPad  = 24  // between panels
	plotTop   = 64  // title and legend
)

type panelKey struct {
	op Op
	g  int
	sa Sharing
}

// WritePlot writes an SVG bar chart of the throughput: one bar per row,
// grouped by transform, coloured by size, one panel per op, G and SA mode.
func (r *Report) WritePlot(w io.Writer) error {
	var ops []Op
	type line struct {
		g  int
		sa Sharing
	}
	var lines []line
	var sizes, transforms []string
	for _, x := range r.Results {
		if !slices.Contains(ops, x.Op) {
			ops = append(ops, x.Op)
		}
		if l := (line{x.Goroutines, x.SA}); !slices.Contains(lines, l) {
			lines = append(lines, l)
		}
		if !slices.Contains(sizes, x.Size) {
			sizes = append(sizes, x.Size)
		}
		if !slices.Contains(transforms, x.Transform) {
			transforms = append(transforms, x.Transform)
		}
	}
	slices.SortStableFunc(lines, func(a, b line) int {
		if a.g != b.g {
			return a.g - b.g
		}
		return slices.Index(AllSharing, a.sa) - slices.Index(AllSharing, b.sa)
	})
	panels := map[panelKey][]Result{}
	for _, x := range r.Results {
		k := panelKey{x.Op, x.Goroutines, x.SA}
		panels[k] = append(panels[k], x)
	}
	groupW := len(sizes)*(barW+barGap) - barGap + groupGap
	plotW := max(len(transforms)*groupW, 270)
	cellW := panelLeft + plotW + panelPad
	cellH := panelTop + panelH + panelBot
	width := max(len(ops)*cellW+panelPad+40, 1000) // the last panel's title may run past its plot
	height := plotTop + max(len(lines), 1)*cellH

	b := bufio.NewWriter(w)
	p := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	p(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n", width, height, width, height)
	p(`<style>.axis{stroke:#333;stroke-width:1}.grid{stroke:#e3e3e3;stroke-width:1}.whisker{stroke:#333;stroke-width:1}.ceil{stroke:#000;stroke-width:2}.t{fill:#222}</style>` + "\n")
	p(`<rect x="0" y="0" width="%d" height="%d" fill="#fff"/>`+"\n", width, height)
	p(`<text class="t" x="%d" y="20" font-size="15" font-weight="bold">%s</text>`+"\n", panelPad, esc(fmt.Sprintf(
		"goipsec bench datapath: Gbit/s, median of %d reps (whiskers: min to max)", r.Settings.Reps)))
	p(`<text class="t" x="%d" y="36" font-size="10">%s</text>`+"\n", panelPad, esc(r.Machine.String()))
	// Legend: one swatch per size, then the ceiling mark.
	lx := panelPad
	for i, s := range sizes {
		p(`<rect x="%d" y="46" width="12" height="12" fill="%s"/><text class="t" x="%d" y="56">%s</text>`+"\n", lx, palette[i%len(palette)], lx+16, esc(sizeLabel(s)))
		lx += 24 + 7*len(sizeLabel(s))
	}
	p(`<line class="ceil" x1="%d" y1="52" x2="%d" y2="52"/><text class="t" x="%d" y="56">ceiling: the bare primitive alone</text>`+"\n", lx, lx+14, lx+18)

	for ci, op := range ops {
		for li, l := range lines {
			rows := panels[panelKey{op, l.g, l.sa}]
			if len(rows) == 0 {
				continue
			}
			x0 := panelPad + ci*cellW + panelLeft
			y0 := plotTop + li*cellH + panelTop // top of the plot area
			top := 0.0
			for _, x := range rows {
				top = max(top, finite(x.Gbps.Max), finite(x.Gbps.Median), finite(x.CeilingGbps))
			}
			ymax, step := niceScale(top)
			sa := "own SA pair each"
			if l.sa == Shared {
				sa = "one shared SA pair"
			} else if l.g == 1 {
				sa = "one SA pair"
			}
			p(`<g>`+"\n"+`<text class="t" x="%d" y="%d" font-size="12" font-weight="bold">%s</text>`+"\n", x0, y0-12, esc(fmt.Sprintf("%s, %d goroutine%s, %s", op, l.g, plural(l.g), sa)))
			for v := 0.0; v <= ymax*(1+1e-9); v += step {
				y := y0 + panelH - int(math.Round(v/ymax*panelH))
				p(`<line class="grid" x1="%d" y1="%d" x2="%d" y2="%d"/><text class="t" x="%d" y="%d" text-anchor="end">%s</text>`+"\n",
					x0, y, x0+plotW, y, x0-6, y+4, esc(tickLabel(v, step)))
			}
			p(`<text class="t" transform="translate(%d,%d) rotate(-90)" text-anchor="middle">Gbit/s</text>`+"\n", x0-40, y0+panelH/2)
			p(`<line class="axis" x1="%d" y1="%d" x2="%d" y2="%d"/>`+"\n", x0, y0, x0, y0+panelH)
			p(`<line class="axis" x1="%d" y1="%d" x2="%d" y2="%d"/>`+"\n", x0, y0+panelH, x0+plotW, y0+panelH)
			scale := func(v float64) int { return int(math.Round(finite(v) / ymax * panelH)) }
			for ti, t := range transforms {
				gx := x0 + groupGap/2 + ti*groupW
				drawn := false
				for si, s := range sizes {
					i := slices.IndexFunc(rows, func(x Result) bool { return x.Transform == t && x.Size == s })
					if i < 0 {
						continue
					}
					drawn = true
					x := rows[i]
					bx := gx + si*(barW+barGap)
					h := scale(x.Gbps.Median)
					tip := fmt.Sprintf("%s %s %s G=%d %s: %s Gbit/s [%s-%s], %s Mpps, %s ns/pkt, %s allocs/pkt",
						x.Op, x.Transform, x.Size, x.Goroutines, x.SA, sig(x.Gbps.Median), sig(x.Gbps.Min), sig(x.Gbps.Max),
						sig(x.Mpps.Median), sig(x.NsPerPacket.Median), allocs(x.AllocsPerPacket))
					if x.Ratio > 0 {
						tip += fmt.Sprintf(", %.0f%% of the %s ceiling (%s Gbit/s)", 100*x.Ratio, x.Ceiling, sig(x.CeilingGbps))
					}
					if x.Err != "" {
						tip += ", error: " + x.Err
					}
					p(`<rect class="bar" x="%d" y="%d" width="%d" height="%d" fill="%s"><title>%s</title></rect>`+"\n",
						bx, y0+panelH-h, barW, h, palette[si%len(palette)], esc(tip))
					if lo, hi := scale(x.Gbps.Min), scale(x.Gbps.Max); hi > lo {
						p(`<line class="whisker" x1="%d" y1="%d" x2="%d" y2="%d"/>`+"\n", bx+barW/2, y0+panelH-hi, bx+barW/2, y0+panelH-lo)
					}
					if x.CeilingGbps > 0 {
						cy := y0 + panelH - scale(x.CeilingGbps)
						p(`<line class="ceil" x1="%d" y1="%d" x2="%d" y2="%d"/>`+"\n", bx-1, cy, bx+barW+1, cy)
					}
				}
				if drawn {
					lx, ly := gx+(len(sizes)*(barW+barGap))/2, y0+panelH+12
					p(`<text class="t" transform="translate(%d,%d) rotate(-35)" text-anchor="end">%s</text>`+"\n", lx, ly, esc(t))
				}
			}
			p("</g>\n")
		}
	}
	p("</svg>\n")
	return b.Flush()
}

// tickLabel formats an axis value with the decimals its step needs.
func tickLabel(v, step float64) string {
	d := 0
	for f := step; d < 6 && math.Abs(f-math.Round(f)) > 1e-9*step; f *= 10 {
		d++
	}
	return strconv.FormatFloat(v, 'f', d, 64)
}

func sizeLabel(s string) string {
	if s == "imix" {
		return "IMIX"
	}
	return s + " B"
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func finite(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
		return 0
	}
	return v
}

// niceScale returns an axis maximum of at least v and a tick step, both
// round numbers (1, 2, 2.5 or 5 times a power of ten), 3 to 5 steps apart.
func niceScale(v float64) (top, step float64) {
	if !(v > 0) {
		return 1, 0.25
	}
	raw := v / 5
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		step = m * p
		if step >= raw {
			break
		}
	}
	top = math.Ceil(v/step-1e-9) * step
	return top, step
}

func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}
