package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/alecthomas/kingpin/v2"

	"github.com/scx-slo/scx-slo/internal/nodestatus"
)

func init() { commands = append(commands, registerStatus) }

func registerStatus(app *kingpin.Application) {
	cmd := app.Command("status", "Print the running exporter's view of this node: mode, kernel, scheduler and cgroups.")
	addr := cmd.Flag("address", "The exporter's address (scheme optional).").Default("http://127.0.0.1" + DefaultListenAddress).String()
	output := cmd.Flag("output", "Output format: table or json.").Short('o').Default("table").Enum("table", "json")
	timeout := cmd.Flag("timeout", "How long to wait for the exporter.").Default("5s").Duration()
	target := cmd.Arg("target", "Show only this pod (namespace/name) or cgroup path (and its children).").String()
	cmd.Action(func(*kingpin.ParseContext) error {
		url := *addr
		if !strings.Contains(url, "://") {
			url = "http://" + url
		}
		url = strings.TrimSuffix(url, "/") + "/status"
		client := &http.Client{Timeout: *timeout}
		resp, err := client.Get(url)
		if err != nil {
			return fmt.Errorf("asking the exporter at %s: %w (is `scx-slo` running? --address sets where)", url, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s answered %s", url, resp.Status)
		}
		var st nodestatus.Status
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			return fmt.Errorf("reading %s: %w", url, err)
		}
		if *target != "" && !st.Only(*target) {
			what := "cgroup"
			if nodestatus.IsPodName(*target) {
				what = "pod"
			}
			return fmt.Errorf("%s %q: no cgroup of it has wakeups or an SLO on this node", what, *target)
		}
		if *output == "json" {
			return st.WriteJSON(os.Stdout)
		}
		return st.WriteTable(os.Stdout)
	})
}
