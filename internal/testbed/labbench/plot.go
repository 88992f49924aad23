package labbench

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math"
	"strconv"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// A small line-chart renderer: panels on a grid, categorical x axis,
// linear or log y axis, one line per series with min-max bars, and an
// optional horizontal reference line (the floor). Enough for the bench
// plots without pulling a plotting library into the module.

type series struct {
	name  string
	color color.RGBA
	y     []float64 // one per x category; NaN leaves a gap
	lo    []float64 // optional range bars
	hi    []float64
}

type panel struct {
	title, xlabel, ylabel string
	xs                    []string // categories
	logY                  bool
	series                []series
	ref                   float64 // horizontal line when > 0 (or != 0 on linear axes)
	refName               string
}

var palette = map[string]color.RGBA{
	EEVDF:      {0xd6, 0x27, 0x28, 0xff},
	EEVDFTuned: {0xff, 0x7f, 0x0e, 0xff},
	EEVDFIdle:  {0x94, 0x67, 0xbd, 0xff},
	SCXSLO:     {0x1f, 0x77, 0xb4, 0xff},
	// The peers in greens and browns, apart from EEVDF's warm colours.
	SCXSimple:      {0x2c, 0xa0, 0x2c, 0xff},
	SCXFlatCG:      {0x8c, 0x56, 0x4b, 0xff},
	SCXFlatCGShort: {0x17, 0xbe, 0xcf, 0xff},
}

var (
	black = color.RGBA{0, 0, 0, 0xff}
	grey  = color.RGBA{0xcc, 0xcc, 0xcc, 0xff}
	dark  = color.RGBA{0x55, 0x55, 0x55, 0xff}
	white = color.RGBA{0xff, 0xff, 0xff, 0xff}
)

const (
	panelW, panelH = 440, 320
	marginL        = 64
	marginR        = 12
	marginT        = 26
	marginB        = 40
	legendH        = 26
)

// renderPNG draws panels cols wide under a title and a shared legend.
func renderPNG(w io.Writer, title string, cols int, panels []panel) error {
	rows := (len(panels) + cols - 1) / cols
	img := image.NewRGBA(image.Rect(0, 0, cols*panelW, rows*panelH+legendH+22))
	draw.Draw(img, img.Bounds(), image.NewUniform(white), image.Point{}, draw.Src)
	text(img, 8, 16, title, black)
	// Shared legend: every scheduler that appears in any panel.
	x := 8
	seen := map[string]bool{}
	for _, p := range panels {
		for _, s := range p.series {
			if seen[s.name] {
				continue
			}
			seen[s.name] = true
			fillRect(img, image.Rect(x, 28, x+14, 38), s.color)
			text(img, x+18, 38, s.name, black)
			x += 30 + 7*len(s.name)
		}
		if p.ref != 0 && !seen[p.refName] && p.refName != "" {
			seen[p.refName] = true
			dashedH(img, x, x+14, 33, dark)
			text(img, x+18, 38, p.refName, black)
			x += 30 + 7*len(p.refName)
		}
	}
	for i, p := range panels {
		r := image.Rect((i%cols)*panelW, legendH+22+(i/cols)*panelH, (i%cols+1)*panelW, legendH+22+(i/cols+1)*panelH)
		drawPanel(img, r, p)
	}
	return png.Encode(w, img)
}

func drawPanel(img *image.RGBA, r image.Rectangle, p panel) {
	plot := image.Rect(r.Min.X+marginL, r.Min.Y+marginT, r.Max.X-marginR, r.Max.Y-marginB)
	text(img, r.Min.X+marginL, r.Min.Y+16, p.title, black)
	lo, hi := yRange(p)
	ticks := yTicks(lo, hi, p.logY)
	if len(ticks) > 0 {
		lo, hi = math.Min(lo, ticks[0]), math.Max(hi, ticks[len(ticks)-1])
	}
	ypix := func(v float64) int {
		f := (v - lo) / (hi - lo)
		if p.logY {
			f = (math.Log10(v) - math.Log10(lo)) / (math.Log10(hi) - math.Log10(lo))
		}
		return plot.Max.Y - int(math.Round(f*float64(plot.Dy())))
	}
	xpix := func(i int) int {
		return plot.Min.X + int(math.Round((float64(i)+0.5)*float64(plot.Dx())/float64(len(p.xs))))
	}
	for _, t := range ticks {
		y := ypix(t)
		hline(img, plot.Min.X, plot.Max.X, y, grey)
		l := formatTick(t)
		text(img, plot.Min.X-6-7*len(l), y+4, l, black)
	}
	for i, c := range p.xs {
		x := xpix(i)
		vline(img, x, plot.Max.Y, plot.Max.Y+4, black)
		text(img, x-7*len(c)/2, plot.Max.Y+17, c, black)
	}
	text(img, plot.Min.X+plot.Dx()/2-7*len(p.xlabel)/2, plot.Max.Y+34, p.xlabel, dark)
	textVertical(img, r.Min.X+6, plot.Min.Y+plot.Dy()/2+7*len(p.ylabel)/2, p.ylabel, dark)
	hline(img, plot.Min.X, plot.Max.X, plot.Max.Y, black)
	vline(img, plot.Min.X, plot.Min.Y, plot.Max.Y, black)
	if p.ref > 0 || (!p.logY && p.ref != 0) {
		dashedH(img, plot.Min.X, plot.Max.X, ypix(p.ref), dark)
	}
	for k, s := range p.series {
		// Nudge each series sideways so range bars do not overlap.
		off := (k - len(p.series)/2) * 4
		prevX, prevY, have := 0, 0, false
		for i, v := range s.y {
			if math.IsNaN(v) || (p.logY && v <= 0) {
				have = false
				continue
			}
			x, y := xpix(i)+off, ypix(v)
			if s.lo != nil && !math.IsNaN(s.lo[i]) && (!p.logY || s.lo[i] > 0) {
				vline(img, x, ypix(s.hi[i]), ypix(s.lo[i]), s.color)
			}
			fillRect(img, image.Rect(x-3, y-3, x+4, y+4), s.color)
			if have {
				line(img, prevX, prevY, x, y, s.color)
			}
			prevX, prevY, have = x, y, true
		}
	}
}

func yRange(p panel) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	add := func(v float64) {
		if math.IsNaN(v) || (p.logY && v <= 0) {
			return
		}
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	for _, s := range p.series {
		for i, v := range s.y {
			add(v)
			if s.lo != nil {
				add(s.lo[i])
				add(s.hi[i])
			}
		}
	}
	if p.ref != 0 {
		add(p.ref)
	}
	if math.IsInf(lo, 1) {
		return 0, 1
	}
	if !p.logY {
		lo = math.Min(lo, 0) // linear axes start at zero
	}
	if hi <= lo {
		hi = lo + 1
		if p.logY {
			hi = lo * 10
		}
	}
	return lo, hi
}

// yTicks: decades (with 2 and 5 in between when few) on log axes, 1-2-5
// steps on linear ones.
func yTicks(lo, hi float64, logY bool) []float64 {
	var t []float64
	if logY {
		d0, d1 := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
		steps := []float64{1}
		if d1-d0 <= 2 {
			steps = []float64{1, 2, 5}
		}
		for d := d0; d <= d1; d++ {
			for _, s := range steps {
				v := s * math.Pow(10, d)
				if v >= lo/1.0001 && v <= hi*1.0001 || len(t) == 0 && v > lo {
					t = append(t, v)
				}
			}
		}
		// Always bracket the data.
		if len(t) == 0 || t[0] > lo {
			t = append([]float64{math.Pow(10, d0)}, t...)
		}
		if t[len(t)-1] < hi {
			t = append(t, math.Pow(10, d1))
		}
		return t
	}
	span := hi - lo
	step := math.Pow(10, math.Floor(math.Log10(span/5)))
	for _, m := range []float64{1, 2, 5, 10} {
		if span/(step*m) <= 6 {
			step *= m
			break
		}
	}
	for v := math.Floor(lo/step) * step; v <= hi+step*0.999; v += step {
		t = append(t, v)
	}
	return t
}

func formatTick(v float64) string {
	switch {
	case v == 0:
		return "0"
	case math.Abs(v) >= 1000:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case math.Abs(v) >= 1:
		return strconv.FormatFloat(v, 'g', 4, 64)
	}
	return strconv.FormatFloat(v, 'g', 2, 64)
}

func text(img *image.RGBA, x, y int, s string, c color.Color) {
	d := font.Drawer{Dst: img, Src: image.NewUniform(c), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

// textVertical draws s bottom to top, by drawing it sideways into a
// scratch image and rotating it.
func textVertical(img *image.RGBA, x, y int, s string, c color.Color) {
	w := 7 * len(s)
	tmp := image.NewRGBA(image.Rect(0, 0, w, 13))
	text(tmp, 0, 10, s, c)
	for i := 0; i < w; i++ {
		for j := 0; j < 13; j++ {
			if _, _, _, a := tmp.At(i, j).RGBA(); a > 0 {
				img.Set(x+j, y-i, tmp.At(i, j))
			}
		}
	}
}

func fillRect(img *image.RGBA, r image.Rectangle, c color.Color) {
	draw.Draw(img, r, image.NewUniform(c), image.Point{}, draw.Src)
}

func hline(img *image.RGBA, x0, x1, y int, c color.Color) {
	for x := x0; x <= x1; x++ {
		img.Set(x, y, c)
	}
}

func dashedH(img *image.RGBA, x0, x1, y int, c color.Color) {
	for x := x0; x <= x1; x++ {
		if (x-x0)%8 < 5 {
			img.Set(x, y, c)
			img.Set(x, y+1, c)
		}
	}
}

func vline(img *image.RGBA, x, y0, y1 int, c color.Color) {
	if y0 > y1 {
		y0, y1 = y1, y0
	}
	for y := y0; y <= y1; y++ {
		img.Set(x, y, c)
	}
}

// line draws a two-pixel-wide segment (Bresenham).
func line(img *image.RGBA, x0, y0, x1, y1 int, c color.Color) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := sign(x1-x0), sign(y1-y0)
	e := dx + dy
	for {
		img.Set(x0, y0, c)
		img.Set(x0, y0+1, c)
		if x0 == x1 && y0 == y1 {
			return
		}
		e2 := 2 * e
		if e2 >= dy {
			e += dy
			x0 += sx
		}
		if e2 <= dx {
			e += dx
			y0 += sy
		}
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func sign(v int) int {
	switch {
	case v < 0:
		return -1
	case v > 0:
		return 1
	}
	return 0
}

func loadLabel(l int) string { return fmt.Sprintf("%d%%", l) }
