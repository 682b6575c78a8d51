//go:build unix

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The dashboard is also drawn by Prometheus itself, so that the docs can
// show it filled (docs/dashboard.png): each panel of the Grafana
// dashboard becomes a graph of a Prometheus console template
// (PromConsole.Graph of Prometheus's console library, drawn by its own
// JavaScript from its range queries), laid out as the dashboard's grid.
// Grafana itself is not a package this project can install; the panels'
// queries, units and legends are the dashboard's own.

// dashboardPanel is what the console needs of a panel of the dashboard.
type dashboardPanel struct {
	Title   string `json:"title"`
	Type    string `json:"type"`
	GridPos struct {
		W int `json:"w"`
	} `json:"gridPos"`
	FieldConfig struct {
		Defaults struct {
			Unit string `json:"unit"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
	Targets []struct {
		Expr         string `json:"expr"`
		LegendFormat string `json:"legendFormat"`
	} `json:"targets"`
}

// consoleGraph is one graph of the console.
type consoleGraph struct {
	ID, Title string
	Width     int // pixels
	Exprs     []string
	Names     []string
	Units     string
}

// consoleRow is a row of the dashboard: its title and its graphs.
type consoleRow struct {
	Title  string
	Graphs []consoleGraph
}

// grafanaLegend is a label reference of a Grafana legend, {{label}}.
var grafanaLegend = regexp.MustCompile(`\{\{\s*(\w+)\s*\}\}`)

// consoleUnits is the y-axis unit of a Grafana unit.
func consoleUnits(unit string) string {
	switch unit {
	case "reqps":
		return "/s"
	case "s":
		return "s"
	case "percentunit":
		return "ratio"
	}
	return ""
}

// dashboardRows reads the dashboard's panels into rows of graphs.
func dashboardRows(t *testing.T) []consoleRow {
	t.Helper()
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []dashboardPanel `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatal(err)
	}
	var rows []consoleRow
	for i, p := range dash.Panels {
		if p.Type == "row" {
			rows = append(rows, consoleRow{Title: p.Title})
			continue
		}
		if len(rows) == 0 {
			rows = append(rows, consoleRow{})
		}
		g := consoleGraph{ID: fmt.Sprintf("panel%d", i), Title: p.Title, Width: p.GridPos.W*62 - 90, Units: consoleUnits(p.FieldConfig.Defaults.Unit)}
		for _, tg := range p.Targets {
			g.Exprs = append(g.Exprs, promExpr(tg.Expr))
			g.Names = append(g.Names, grafanaLegend.ReplaceAllString(tg.LegendFormat, "[[ $1 ]]"))
		}
		rows[len(rows)-1].Graphs = append(rows[len(rows)-1].Graphs, g)
	}
	return rows
}

// consoleTemplate is the Prometheus console of the dashboard. Prometheus
// runs it as a Go template itself, so the page is written with other
// delimiters here and Prometheus's own actions are left in.
var consoleTemplate = template.Must(template.New("console").Delims("[%", "%]").Parse(`<!doctype html>
<html lang="en"><head>{{ template "prom_console_head" }}
<style>
body { font-family: sans-serif; margin: 12px; background: #fff; }
h1 { font-size: 20px; margin: 0 0 8px; }
h2 { font-size: 15px; margin: 14px 0 4px; color: #444; border-bottom: 1px solid #ddd; }
.row-of-panels { display: flex; gap: 12px; }
.panel { border: 1px solid #ddd; border-radius: 4px; padding: 6px; }
.panel h3 { font-size: 13px; margin: 0 0 4px; }
.prom_graph_link { display: none; }
</style></head><body>
<h1>caddy-uma [% .Subtitle %]</h1>
[% range .Rows %]<h2>[% .Title %]</h2>
<div class="row-of-panels">[% range .Graphs %]
<div class="panel" style="width: [% .Width %]px"><h3>[% .Title %]</h3><div id="[% .ID %]"></div></div>[% end %]
</div>[% end %]
<script>
[% range .Rows %][% range .Graphs %]new PromConsole.Graph({node: document.querySelector("#[% .ID %]"), expr: [% .Exprs %], name: [% .Names %], yUnits: [% .Units %], duration: [% $.Duration %], endTime: [% $.End %], width: [% .Width %], height: 150, min: 0, renderer: "line", yAxisFormatter: PromConsole.NumberFormatter.humanizeNoSmallPrefix});
[% end %][% end %]</script>
</body></html>
`))

// consoleLibrary loads Prometheus's console JavaScript and styles, as the
// example library of Prometheus (prom.lib) does.
const consoleLibrary = `{{ define "prom_console_head" }}
<link type="text/css" rel="stylesheet" href="{{ pathPrefix }}/classic/static/rickshaw/rickshaw.min.css">
<link type="text/css" rel="stylesheet" href="{{ pathPrefix }}/classic/static/css/prom_console.css">
<script src="{{ pathPrefix }}/classic/static/d3/d3.min.js"></script>
<script src="{{ pathPrefix }}/classic/static/rickshaw/rickshaw.min.js"></script>
<script src="{{ pathPrefix }}/classic/static/jquery/jquery.min.js"></script>
<script>var PATH_PREFIX = "{{ pathPrefix }}";</script>
<script src="{{ pathPrefix }}/classic/static/js/prom_console.js"></script>
{{ end }}`

// consoleFlags writes the console library under dir and returns the
// flags of Prometheus that serve consoles from there.
func consoleFlags(t *testing.T, dir string) []string {
	t.Helper()
	consoles, libs := filepath.Join(dir, "consoles"), filepath.Join(dir, "console_libraries")
	for _, d := range []string{consoles, libs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(libs, "uma.lib"), []byte(consoleLibrary), 0o644); err != nil {
		t.Fatal(err)
	}
	return []string{"--web.console.templates=" + consoles, "--web.console.libraries=" + libs}
}

// writeConsole writes the console of the dashboard, uma.html, under dir
// (see consoleFlags); its graphs show the window [start, end].
func writeConsole(t *testing.T, dir, subtitle string, start, end time.Time) {
	t.Helper()
	var page strings.Builder
	err := consoleTemplate.Execute(&page, map[string]any{
		"Subtitle": subtitle,
		"Rows":     dashboardRows(t),
		"Duration": int(end.Sub(start).Seconds()) + 1,
		"End":      end.Unix(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "consoles", "uma.html"), []byte(page.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// shootDashboard opens the console in Chromium, waits until every graph
// is drawn, and returns a full-page PNG of it.
func shootDashboard(t *testing.T, chromium, url string) []byte {
	t.Helper()
	ctx := newBrowser(t, chromium)
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1500, 900), chromedp.Navigate(url)); err != nil {
		t.Fatalf("opening the dashboard console: %v", err)
	}
	// Every panel is drawn but those that may have nothing to show (no
	// fault happened), which Rickshaw leaves empty.
	want := 0
	for _, r := range dashboardRows(t) {
		for _, g := range r.Graphs {
			if !mayBeEmpty[g.Title] {
				want++
			}
		}
	}
	// A graph is drawn when its table holds Rickshaw's svg.
	for {
		drawn, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll(".rickshaw_graph svg").length`))
		if err != nil {
			t.Fatalf("reading the dashboard console: %v", err)
		}
		if drawn >= want {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the dashboard console drew %d of %d graphs", drawn, want)
		case <-time.After(200 * time.Millisecond):
		}
	}
	// Let the rest finish (Prometheus writes "No timeseries returned" in
	// the empty ones).
	time.Sleep(time.Second)
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot of the dashboard: %v", err)
	}
	return png
}
