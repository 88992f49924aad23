package shed

import (
	"math"
	"strings"
	"testing"
	"time"
)

// feed gives c one read every 5 ms in [from, from+d) and returns the end.
func feed(c *Controller, from time.Time, d time.Duration, bit bool) time.Time {
	end := from.Add(d)
	for t := from; t.Before(end); t = t.Add(5 * time.Millisecond) {
		c.Observe(bit, t)
	}
	return end
}

type phase struct {
	bit bool
	d   time.Duration
	// expectations after the phase
	fraction float64
	shedding bool
	backoff  bool
}

func TestController(t *testing.T) {
	base := ControllerConfig{Floor: 0.2, Decrease: 0.5, Increase: 0.1, Step: 100 * time.Millisecond,
		EnterAfter: 10 * time.Millisecond, ExitAfter: 250 * time.Millisecond}
	with := func(f func(*ControllerConfig)) ControllerConfig { c := base; f(&c); return c }
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	cases := []struct {
		name   string
		cfg    ControllerConfig
		phases []phase
	}{
		{"a blip shorter than enter-after sheds nothing", base, []phase{
			{bit: true, d: ms(10), fraction: 1},
			{bit: false, d: ms(500), fraction: 1},
		}},
		{"overload past enter-after halves the share once", base, []phase{
			{bit: true, d: ms(15), fraction: 0.5, shedding: true},
		}},
		{"sustained overload decreases once per step", base, []phase{
			{bit: true, d: ms(115), fraction: 0.25, shedding: true},
		}},
		{"the floor holds", base, []phase{
			{bit: true, d: ms(2000), fraction: 0.2, shedding: true},
		}},
		{"a clear shorter than exit-after keeps the share", base, []phase{
			{bit: true, d: ms(15), fraction: 0.5, shedding: true},
			{bit: false, d: ms(200), fraction: 0.5, shedding: true},
			// Set again: the episode goes on and the share keeps falling.
			{bit: true, d: ms(100), fraction: 0.25, shedding: true},
		}},
		{"after exit-after the share rises additively", base, []phase{
			{bit: true, d: ms(15), fraction: 0.5, shedding: true},
			// Exit at 250 ms, then +0.1 at 350, 450.
			{bit: false, d: ms(455), fraction: 0.7},
			{bit: false, d: ms(1000), fraction: 1},
		}},
		{"back-off stops decreasing after the window", with(func(c *ControllerConfig) {
			c.Decrease, c.Floor, c.BackoffWindow = 0.9, 0, ms(300)
		}), []phase{
			// Decreases at 10, 110, 210 ms; at 310 the window is spent.
			{bit: true, d: ms(2000), fraction: 0.9 * 0.9 * 0.9, shedding: true, backoff: true},
			// Calm ends the episode and the back-off.
			{bit: false, d: ms(260), fraction: 0.729, shedding: false},
			// A new episode may decrease again.
			{bit: true, d: ms(15), fraction: 0.729 * 0.9, shedding: true},
		}},
		{"floor 0 sheds everything when asked", with(func(c *ControllerConfig) {
			c.Floor, c.Decrease = 0, 0.01
		}), []phase{
			{bit: true, d: ms(1000), fraction: 0, shedding: true},
		}},
		{"enter-after 0 reacts to the first read", with(func(c *ControllerConfig) { c.EnterAfter = 0 }), []phase{
			{bit: true, d: ms(5), fraction: 0.5, shedding: true},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewController(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			now := time.Unix(1000, 0)
			for i, p := range tc.phases {
				now = feed(c, now, p.d, p.bit)
				if math.Abs(c.Fraction()-p.fraction) > 1e-9 || c.Shedding() != p.shedding || c.Backoff() != p.backoff {
					t.Fatalf("after phase %d (bit %v for %v): fraction %.4f shedding %v backoff %v; want %.4f %v %v",
						i, p.bit, p.d, c.Fraction(), c.Shedding(), c.Backoff(), p.fraction, p.shedding, p.backoff)
				}
			}
		})
	}
}

func TestControllerConfigErrors(t *testing.T) {
	cases := []struct {
		set  func(*ControllerConfig)
		want string
	}{
		{func(c *ControllerConfig) { c.Floor = -0.1 }, "floor -0.1"},
		{func(c *ControllerConfig) { c.Floor = 1.5 }, "floor 1.5"},
		{func(c *ControllerConfig) { c.Floor = math.NaN() }, "floor NaN"},
		{func(c *ControllerConfig) { c.Decrease = 0 }, "decrease 0"},
		{func(c *ControllerConfig) { c.Decrease = 1 }, "decrease 1"},
		{func(c *ControllerConfig) { c.Increase = 0 }, "increase 0"},
		{func(c *ControllerConfig) { c.Increase = 2 }, "increase 2"},
		{func(c *ControllerConfig) { c.Step = 0 }, "step 0s"},
		{func(c *ControllerConfig) { c.EnterAfter = -time.Second }, "enter-after -1s"},
		{func(c *ControllerConfig) { c.ExitAfter = -time.Second }, "exit-after -1s"},
		{func(c *ControllerConfig) { c.BackoffWindow = -time.Second }, "backoff-window -1s"},
	}
	for _, tc := range cases {
		c := DefaultControllerConfig()
		tc.set(&c)
		_, err := NewController(c)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want+":") {
			t.Errorf("want error starting %q, got %v", tc.want, err)
		}
	}
	if err := DefaultControllerConfig().Validate(); err != nil {
		t.Errorf("defaults rejected: %v", err)
	}
}
