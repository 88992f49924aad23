package dashboards

import (
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/heatmap"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/statetimeline"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// Every panel queries the datasource the user picks in the datasource
// variable, so the JSON imports into any Grafana.
var datasource = common.DataSourceRef{Type: cog.ToPtr("prometheus"), Uid: cog.ToPtr("${datasource}")}

// q is one PromQL query of a panel.
type q struct {
	expr, legend string
}

func targets(qs []q, instant bool, format prometheus.PromQueryFormat) []cog.Builder[variants.Dataquery] {
	out := make([]cog.Builder[variants.Dataquery], 0, len(qs))
	for i, x := range qs {
		b := prometheus.NewDataqueryBuilder().
			Datasource(datasource).
			RefId(string(rune('A' + i))).
			Expr(x.expr).
			LegendFormat(x.legend).
			Format(format)
		if instant {
			b.Instant()
		} else {
			b.Range()
		}
		out = append(out, b)
	}
	return out
}

// size is a panel's grid width and height (the grid is 24 wide).
type size struct{ w, h uint32 }

func timeSeries(title, desc, unit string, sz size, qs ...q) *timeseries.PanelBuilder {
	return timeseries.NewPanelBuilder().
		Title(title).Description(desc).Datasource(datasource).
		Span(sz.w).Height(sz.h).Unit(unit).
		Targets(targets(qs, false, prometheus.PromQueryFormatTimeSeries)).
		FillOpacity(10).ShowPoints(common.VisibilityModeNever).
		Legend(common.NewVizLegendOptionsBuilder().
			ShowLegend(true).
			DisplayMode(common.LegendDisplayModeTable).
			Placement(common.LegendPlacementBottom).
			Calcs([]string{"mean", "max", "lastNotNull"})).
		Tooltip(common.NewVizTooltipOptionsBuilder().Mode(common.TooltipDisplayModeMulti).Sort(common.SortOrderDescending))
}

// dashed makes the series of the given query a dashed line without fill:
// used for budgets and targets drawn next to what is measured against them.
// Free-form values are built from JSON's own types (string, float64, []any,
// map[string]any) so that the model equals what the JSON reads back as.
func dashed(refID string) (dashboard.MatcherConfig, []dashboard.DynamicConfigValue) {
	return dashboard.MatcherConfig{Id: "byFrameRefID", Options: refID}, []dashboard.DynamicConfigValue{
		{Id: "custom.lineStyle", Value: map[string]any{"fill": "dash", "dash": []any{10.0, 10.0}}},
		{Id: "custom.fillOpacity", Value: 0.0},
	}
}

func stateTimeline(title, desc string, sz size, mappings []dashboard.ValueMapping, qs ...q) *statetimeline.PanelBuilder {
	return statetimeline.NewPanelBuilder().
		Title(title).Description(desc).Datasource(datasource).
		Span(sz.w).Height(sz.h).
		Targets(targets(qs, false, prometheus.PromQueryFormatTimeSeries)).
		Mappings(mappings).
		ShowValue(common.VisibilityModeNever).
		MergeValues(true).
		Legend(common.NewVizLegendOptionsBuilder().ShowLegend(false).DisplayMode(common.LegendDisplayModeList).Placement(common.LegendPlacementBottom))
}

// statNames shows one tile per series with the series name as text: how
// labels such as mode="enforce" are displayed.
func statNames(title, desc, noValue string, sz size, qs ...q) *stat.PanelBuilder {
	return stat.NewPanelBuilder().
		Title(title).Description(desc).Datasource(datasource).
		Span(sz.w).Height(sz.h).
		Targets(targets(qs, true, prometheus.PromQueryFormatTimeSeries)).
		TextMode(common.BigValueTextModeName).
		ColorMode(common.BigValueColorModeNone).
		GraphMode(common.BigValueGraphModeNone).
		NoValue(noValue).
		ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"}).Values(false))
}

func statValue(title, desc, unit string, sz size, qs ...q) *stat.PanelBuilder {
	return stat.NewPanelBuilder().
		Title(title).Description(desc).Datasource(datasource).
		Span(sz.w).Height(sz.h).Unit(unit).
		Targets(targets(qs, true, prometheus.PromQueryFormatTimeSeries)).
		TextMode(common.BigValueTextModeValue).
		ColorMode(common.BigValueColorModeValue).
		GraphMode(common.BigValueGraphModeNone).
		ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"}).Values(false))
}

// tableOf shows instant queries side by side, joined on their labels, with
// the value columns renamed; an empty column name hides the value (for info
// metrics, whose labels are the point).
func tableOf(title, desc string, sz size, columns []string, qs ...q) *table.PanelBuilder {
	rename := map[string]any{}
	exclude := map[string]any{"Time": true, "__name__": true}
	for i, c := range columns {
		col := fmt.Sprintf("Value #%c", 'A'+i)
		if c == "" {
			exclude[col] = true
		} else {
			rename[col] = c
		}
	}
	return table.NewPanelBuilder().
		Title(title).Description(desc).Datasource(datasource).
		Span(sz.w).Height(sz.h).
		Targets(targets(qs, true, prometheus.PromQueryFormatTable)).
		WithTransformation(dashboard.DataTransformerConfig{Id: "merge", Options: map[string]any{}}).
		WithTransformation(dashboard.DataTransformerConfig{Id: "organize", Options: map[string]any{
			"excludeByName": exclude,
			"renameByName":  rename,
		}})
}

func heatmapOf(title, desc string, sz size, expr string) *heatmap.PanelBuilder {
	return heatmap.NewPanelBuilder().
		Title(title).Description(desc).Datasource(datasource).
		Span(sz.w).Height(sz.h).
		Targets(targets([]q{{expr, "{{le}}"}}, false, prometheus.PromQueryFormatHeatmap)).
		// Prometheus already buckets the data; Grafana must not re-bucket.
		Calculate(false).
		YAxis(heatmap.NewYAxisConfigBuilder().Unit("s")).
		RowsFrame(heatmap.NewRowsHeatmapOptionsBuilder().Layout(common.HeatmapCellLayoutLe)).
		Color(heatmap.NewHeatmapColorOptionsBuilder().
			Mode(heatmap.HeatmapColorModeScheme).Scheme("Spectral").
			Scale(heatmap.HeatmapColorScaleExponential).Exponent(0.5).Steps(64)).
		CellValues(heatmap.NewCellValuesBuilder().Unit("short")).
		ShowLegend().
		Tooltip(heatmap.NewHeatmapTooltipBuilder().Mode(common.TooltipDisplayModeSingle).YHistogram(true))
}

// valueText maps gauge values to words and colours, e.g. 1 -> "attached".
func valueText(pairs ...string) []dashboard.ValueMapping {
	opts := map[string]dashboard.ValueMappingResult{}
	for i := 0; i+2 < len(pairs); i += 3 {
		opts[pairs[i]] = dashboard.ValueMappingResult{
			Text:  cog.ToPtr(pairs[i+1]),
			Color: cog.ToPtr(pairs[i+2]),
			Index: cog.ToPtr(int32(i / 3)),
		}
	}
	return []dashboard.ValueMapping{{ValueMap: &dashboard.ValueMap{Type: dashboard.MappingTypeValueToText, Options: opts}}}
}

// yesNo is the mapping for 0/1 gauges where 1 is good.
func yesNo(no, yes string) []dashboard.ValueMapping {
	return valueText("0", no, "red", "1", yes, "green")
}

// noYes is the mapping for 0/1 gauges where 1 is bad.
func noYes(no, yes string) []dashboard.ValueMapping {
	return valueText("0", no, "green", "1", yes, "red")
}

func thresholds(steps ...dashboard.Threshold) *dashboard.ThresholdsConfigBuilder {
	return dashboard.NewThresholdsConfigBuilder().Mode(dashboard.ThresholdsModeAbsolute).Steps(steps)
}

// step is a threshold from value v on; the first step of a list uses nil
// for "from minus infinity".
func step(v *float64, color string) dashboard.Threshold {
	return dashboard.Threshold{Value: v, Color: color}
}

func row(title string) *dashboard.RowBuilder { return dashboard.NewRowBuilder(title) }
