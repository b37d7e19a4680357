package main

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// impls in drawing order, with their colours: the reactor stands out, the
// floor is the grey reference.
var impls = []struct {
	name  string
	color color.Color
	shape draw.GlyphDrawer
}{
	{"reactor", color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, draw.CircleGlyph{}},
	{"goroutine", color.RGBA{R: 0xd6, G: 0x5f, B: 0x0e, A: 0xff}, draw.PyramidGlyph{}},
	{"floor", color.RGBA{R: 0x80, G: 0x80, B: 0x80, A: 0xff}, draw.BoxGlyph{}},
	{"forwarder", color.RGBA{R: 0x50, G: 0x50, B: 0x50, A: 0xff}, draw.BoxGlyph{}},
	{"framefwd", color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}, draw.SquareGlyph{}},
}

// A path is one way to the guest: its workloads' name prefix, the suffix of
// its charts' file names and the words for it in their titles.
type path struct{ prefix, suffix, label string }

var paths = []path{
	{"", "", "in-process echo guest"},
	{unixPrefix, "-unix", "external echo guest on unix:"},
}

// A chart draws one PNG of one path from the medians; it returns "" if the
// file has none of its workloads.
var charts = []func(Table, path, string) (string, error){latency, throughput, fanIn, costs}

const (
	width  = 9 * vg.Inch
	height = 5.5 * vg.Inch
)

func newPlot(title, ylabel string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font.Size = 15
	p.Y.Label.Text = ylabel
	p.Y.Label.TextStyle.Font.Size = 12
	p.X.Tick.Label.Font.Size = 11
	p.Y.Tick.Label.Font.Size = 11
	p.Legend.Top = true
	p.Legend.TextStyle.Font.Size = 12
	p.Add(plotter.NewGrid())
	return p
}

func save(p *plot.Plot, dir, name string) (string, error) {
	path := filepath.Join(dir, name)
	if err := p.Save(width, height, path); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return path, nil
}

// latency: p50, p99 and p99.9 of the 64-byte round trip, one panel each
// (each with its own scale: the tail is ten times the median), a bar per
// impl.
func latency(t Table, pa path, dir string) (string, error) {
	w := pa.prefix + "rt/size=64"
	if t[w] == nil {
		return "", nil
	}
	var plots []*plot.Plot
	for _, q := range []string{"p50", "p99", "p99.9"} {
		p := newPlot("round trip "+q+", "+pa.label, "µs")
		p.Title.TextStyle.Font.Size = 11
		var groups []string
		values := map[string][]float64{}
		for _, im := range impls {
			if v, ok := t.Get(w, im.name, q+"-ns"); ok {
				groups = append(groups, im.name)
				values[im.name] = make([]float64, len(impls))
				values[im.name][len(groups)-1] = v / 1e3
			}
		}
		for im, row := range values {
			values[im] = row[:len(groups)]
		}
		if err := singleBars(p, groups, values, 45, func(v float64) string { return fmt.Sprintf("%.0f µs", v) }); err != nil {
			return "", err
		}
		plots = append(plots, p)
	}
	return saveTiles(plots, 3, dir, "latency"+pa.suffix+".png", width, height)
}

// saveTiles draws plots in a grid with cols columns into one PNG.
func saveTiles(plots []*plot.Plot, cols int, dir, name string, w, h vg.Length) (string, error) {
	rows := (len(plots) + cols - 1) / cols
	grid := make([][]*plot.Plot, rows)
	for i := range grid {
		grid[i] = make([]*plot.Plot, cols)
		for j := range cols {
			if k := i*cols + j; k < len(plots) {
				grid[i][j] = plots[k]
			}
		}
	}
	img := vgimg.New(w, h)
	dc := draw.New(img)
	pad := 4 * vg.Millimeter
	tiles := draw.Tiles{Rows: rows, Cols: cols, PadX: pad, PadY: pad, PadTop: pad / 2, PadBottom: pad / 2, PadLeft: pad / 2, PadRight: pad}
	canvases := plot.Align(grid, tiles, dc)
	for i := range grid {
		for j, p := range grid[i] {
			if p != nil {
				p.Draw(canvases[i][j])
			}
		}
	}
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return path, f.Close()
}

// streamSizes are the stream workloads in size order, with their bytes.
var streamSizes = []struct {
	label string
	bytes float64
	tick  string
}{{"64", 64, "64 B"}, {"1K", 1 << 10, "1 KiB"}, {"64K", 64 << 10, "64 KiB"}, {"3M", 3 << 20, "3 MiB"}}

// throughput: MB/s of the one-client stream by frame size, log-log.
func throughput(t Table, pa path, dir string) (string, error) {
	p := newPlot("Stream, one client pipelining, "+pa.label+" (median of runs)", "throughput (MB/s, log)")
	p.X.Label.Text = "frame size (log)"
	p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	var ticks []plot.Tick
	for _, s := range streamSizes {
		ticks = append(ticks, plot.Tick{Value: s.bytes, Label: s.tick})
	}
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	drawn := false
	for _, im := range impls {
		var xys plotter.XYs
		for _, s := range streamSizes {
			if v, ok := t.Get(pa.prefix+"stream/size="+s.label, im.name, "MB/s"); ok && v > 0 {
				xys = append(xys, plotter.XY{X: s.bytes, Y: v})
			}
		}
		if len(xys) == 0 {
			continue
		}
		line, points, err := plotter.NewLinePoints(xys)
		if err != nil {
			return "", err
		}
		line.Color, line.Width = im.color, 2
		points.Color, points.Shape, points.Radius = im.color, im.shape, 4
		p.Add(line, points)
		p.Legend.Add(im.name, line, points)
		labels := make([]string, len(xys))
		for i, xy := range xys {
			labels[i] = mbps(xy.Y)
		}
		l, err := plotter.NewLabels(plotter.XYLabels{XYs: xys, Labels: labels})
		if err != nil {
			return "", err
		}
		l.Offset = vg.Point{X: -12, Y: 7}
		for i := range l.TextStyle {
			l.TextStyle[i].Font.Size = 9
			l.TextStyle[i].Color = im.color
		}
		p.Add(l)
		drawn = true
	}
	if !drawn {
		return "", nil
	}
	p.X.Min, p.X.Max = 40, 8<<20
	p.Y.Min, p.Y.Max = p.Y.Min/1.5, p.Y.Max*1.5
	p.Legend.Left, p.Legend.Top = true, true
	return save(p, dir, "throughput"+pa.suffix+".png")
}

func mbps(v float64) string {
	if v >= 1000 {
		return fmt.Sprintf("%.2f GB/s", v/1000)
	}
	return fmt.Sprintf("%.0f MB/s", v)
}

// fanIn: aggregate frames/s of 16 clients, and how unevenly they were served.
func fanIn(t Table, pa path, dir string) (string, error) {
	var w string
	for name := range t {
		if strings.HasPrefix(name, pa.prefix+"fanin/") {
			w = name
		}
	}
	if w == "" {
		return "", nil
	}
	var groups []string
	values := map[string][]float64{}
	for _, im := range impls {
		v, ok := t.Get(w, im.name, "frames/s")
		if !ok {
			continue
		}
		spread, _ := t.Get(w, im.name, "spread-%")
		groups = append(groups, fmt.Sprintf("%s (spread %.0f%%)", im.name, spread))
		row := make([]float64, len(impls))
		row[len(groups)-1] = v / 1e6
		values[im.name] = row
	}
	for im, row := range values {
		values[im] = row[:len(groups)]
	}
	p := newPlot("Fan-in/fan-out: "+w+", "+pa.label+" (median of runs)", "aggregate throughput (M frames/s)")
	if err := singleBars(p, groups, values, 60, func(v float64) string { return fmt.Sprintf("%.2f M/s", v) }); err != nil {
		return "", err
	}
	return save(p, dir, "fanin"+pa.suffix+".png")
}

// singleBars draws one bar per group, each impl in its colour, with its
// value printed above it.
func singleBars(p *plot.Plot, groups []string, values map[string][]float64, barWidth vg.Length, format func(float64) string) error {
	for _, im := range impls {
		vs := values[im.name]
		if vs == nil {
			continue
		}
		bars, err := plotter.NewBarChart(plotter.Values(vs), barWidth)
		if err != nil {
			return err
		}
		bars.Color = im.color
		bars.LineStyle.Width = 0
		p.Add(bars)
		var xys plotter.XYs
		var labels []string
		for g, v := range vs {
			if v > 0 {
				xys = append(xys, plotter.XY{X: float64(g), Y: v})
				labels = append(labels, format(v))
			}
		}
		l, err := plotter.NewLabels(plotter.XYLabels{XYs: xys, Labels: labels})
		if err != nil {
			return err
		}
		l.Offset = vg.Point{X: -barWidth / 2, Y: 3}
		p.Add(l)
	}
	p.NominalX(groups...)
	p.Y.Min = 0
	p.Y.Max *= 1.12
	return nil
}

// costWorkloads are the workloads of the cost chart, in table order.
var costWorkloads = []struct{ name, label string }{
	{"rt/size=64", "rt 64"},
	{"stream/size=64", "stream 64"},
	{"stream/size=1K", "stream 1K"},
	{"stream/size=64K", "stream 64K"},
	{"stream/size=3M", "stream 3M"},
	{"fanin/clients=16/size=128", "fan-in 16×128"},
	{"stream-execlog/size=64", "execlog 64"},
	{"stream-execlog/size=64K", "execlog 64K"},
}

// costs: CPU time and system calls per frame of each target process, per
// workload, one panel each, on log scales (they span five orders of
// magnitude).
func costs(t Table, pa path, dir string) (string, error) {
	var plots []*plot.Plot
	for _, m := range []struct{ unit, title string }{
		{"cpu-ns/frame", "target process CPU time per frame (ns, log)"},
		{"syscalls/frame", "target process system calls per frame (log)"},
		{"ctxsw/frame", "target process context switches per frame (log)"},
		{"guest-cpu-ns/frame", "external echo guest's CPU time per frame (ns, log)"},
	} {
		p := newPlot(m.title+", "+pa.label, "")
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
		var labels []string
		for _, w := range costWorkloads {
			labels = append(labels, w.label)
		}
		drawn := false
		for k, im := range impls {
			var xys plotter.XYs
			for g, w := range costWorkloads {
				if v, ok := t.Get(pa.prefix+w.name, im.name, m.unit); ok && v > 0 {
					xys = append(xys, plotter.XY{X: float64(g) + 0.12*float64(k-len(impls)/2), Y: v})
				}
			}
			if len(xys) == 0 {
				continue
			}
			sc, err := plotter.NewScatter(xys)
			if err != nil {
				return "", err
			}
			sc.Color, sc.Radius, sc.Shape = im.color, 5, im.shape
			p.Add(sc)
			p.Legend.Add(im.name, sc)
			drawn = true
		}
		if !drawn {
			continue
		}
		p.NominalX(labels...)
		p.X.Min, p.X.Max = -0.5, float64(len(labels))-0.5
		p.Y.Min, p.Y.Max = math.Max(p.Y.Min/2, 1e-4), p.Y.Max*3
		p.Legend.Top, p.Legend.Left = true, true
		p.Legend.TextStyle.Font.Size = 10
		plots = append(plots, p)
	}
	if len(plots) == 0 {
		return "", nil
	}
	return saveTiles(plots, 1, dir, "costs"+pa.suffix+".png", width, height*vg.Length(len(plots))*0.6)
}
