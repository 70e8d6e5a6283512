package price

import (
	"math"
	"strings"
	"testing"
)

func TestDefault(t *testing.T) {
	t.Parallel()
	d := Default()
	cases := []struct {
		model string
		want  Price
		ok    bool
	}{
		{"mimo-v2.6-pro", Price{0.435, 0.0036, 0.87}, true},
		{"mimo-v2.6-flash", Price{0.14, 0.0028, 0.28}, true},
		{"mimo-v2.6-pro-ultraspeed", Price{0.435, 0.0036, 0.87}, true},
		{"mimo-v2-flash", Price{}, false},
		{"", Price{}, false},
	}
	for _, tc := range cases {
		got, ok := d.Lookup(tc.model)
		if got != tc.want || ok != tc.ok {
			t.Errorf("Lookup(%q) = %+v, %v; want %+v, %v", tc.model, got, ok, tc.want, tc.ok)
		}
	}
	if got := strings.Join(d.Models(), ","); got != "mimo-v2.6-flash,mimo-v2.6-pro,mimo-v2.6-pro-ultraspeed" {
		t.Errorf("Models() = %s", got)
	}
	if got := d.String(); got != "mimo-v2.6-flash=0.14:0.0028:0.28,mimo-v2.6-pro=0.435:0.0036:0.87" {
		t.Errorf("String() = %s", got)
	}
	var none *Table
	if _, ok := none.Cost("mimo-v2.6-pro", Usage{PromptTokens: 1}); ok || none.String() != "" || none.Models() != nil {
		t.Error("a nil table knows a price")
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in        string
		model     string
		want      Price
		ok        bool
		tableText string
	}{
		{"", "mimo-v2.6-pro", Price{0.435, 0.0036, 0.87}, true, "mimo-v2.6-flash=0.14:0.0028:0.28,mimo-v2.6-pro=0.435:0.0036:0.87"},
		{" mimo-v2.6-pro = 1 : 0.5 : 2 , ", "mimo-v2.6-pro", Price{1, 0.5, 2}, true, "mimo-v2.6-flash=0.14:0.0028:0.28,mimo-v2.6-pro=1:0.5:2"},
		// Ultraspeed follows an override of Pro, until it gets its own price.
		{"mimo-v2.6-pro=1:0.5:2", "mimo-v2.6-pro-ultraspeed", Price{1, 0.5, 2}, true, ""},
		{"mimo-v2.6-pro-ultraspeed=3:0.01:6", "mimo-v2.6-pro-ultraspeed", Price{3, 0.01, 6}, true, ""},
		{"my-model=.5:0:1000,", "my-model", Price{0.5, 0, 1000}, true, ""},
		{"my-model=0.000001:0.0000010:007", "my-model", Price{0.000001, 0.000001, 7}, true, "mimo-v2.6-flash=0.14:0.0028:0.28,mimo-v2.6-pro=0.435:0.0036:0.87,my-model=0.000001:0.000001:7"},
		{"my-model=1:1:1", "mimo-v2.6-flash", Price{0.14, 0.0028, 0.28}, true, ""},
	}
	for _, tc := range cases {
		tab, err := Parse(tc.in)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tc.in, err)
		}
		got, ok := tab.Lookup(tc.model)
		if got != tc.want || ok != tc.ok {
			t.Errorf("Parse(%q).Lookup(%s) = %+v, %v; want %+v", tc.in, tc.model, got, ok, tc.want)
		}
		if tc.tableText != "" && tab.String() != tc.tableText {
			t.Errorf("Parse(%q).String() = %s, want %s", tc.in, tab.String(), tc.tableText)
		}
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"mimo-v2.6-pro":                 `price entry "mimo-v2.6-pro": want model=input:cached:output in USD per 1M tokens`,
		"a=1:2":                         `price entry "a=1:2": want model=input:cached:output in USD per 1M tokens`,
		"a=1:2:3:4":                     `price entry "a=1:2:3:4": want model=input:cached:output in USD per 1M tokens`,
		"=1:2:3":                        `price entry "=1:2:3": the model name is empty`,
		"my model=1:2:3":                `price entry "my model=1:2:3": the model name must not contain spaces or control characters`,
		"a=x:2:3":                       `price entry "a=x:2:3": the input price "x" must be a plain decimal number such as 0.435`,
		"a=1:-2:3":                      `price entry "a=1:-2:3": the cached input price "-2" must be a plain decimal number such as 0.435`,
		"a=1:2:1e3":                     `price entry "a=1:2:1e3": the output price "1e3" must be a plain decimal number such as 0.435`,
		"a=1.:2:3":                      `price entry "a=1.:2:3": the input price "1." must be a plain decimal number such as 0.435`,
		"a=:2:3":                        `price entry "a=:2:3": the input price "" must be a plain decimal number such as 0.435`,
		"a=1:2:NaN":                     `price entry "a=1:2:NaN": the output price "NaN" must be a plain decimal number such as 0.435`,
		"a=0.0000001:2:3":               `price entry "a=0.0000001:2:3": the input price "0.0000001" has more than 6 decimal places`,
		"a=1000.000001:2:3":             `price entry "a=1000.000001:2:3": the input price "1000.000001" is above the maximum of 1000 USD per 1M tokens`,
		"a=99999:2:3":                   `price entry "a=99999:2:3": the input price "99999" is above the maximum of 1000 USD per 1M tokens`,
		"a=1:2:3,b=1:1:1,a=1:2:3":       `price entry "a=1:2:3": model a is priced twice`,
		"mimo-v2.6-pro=1:1:1,x=1:2:3:4": `price entry "x=1:2:3:4": want model=input:cached:output in USD per 1M tokens`,
	}
	for in, want := range cases {
		tab, err := Parse(in)
		if err == nil || err.Error() != want {
			t.Errorf("Parse(%q) = %v, %v\nwant error %s", in, tab, err, want)
		}
	}
}

func TestCost(t *testing.T) {
	t.Parallel()
	d := Default()
	cases := []struct {
		name  string
		model string
		u     Usage
		pico  int64
		known bool
	}{
		// llmgateway's reconciliation of a real call: 40911 × 0.435e-6 + 673 × 0.87e-6.
		{"pro, no cache", "mimo-v2.6-pro", Usage{PromptTokens: 40911, CompletionTokens: 673}, 18_381_795_000, true},
		{"flash, cached prefix", "mimo-v2.6-flash", Usage{PromptTokens: 10000, CachedTokens: 8000, CompletionTokens: 500}, 2000*140_000 + 8000*2_800 + 500*280_000, true},
		{"ultraspeed at pro's price", "mimo-v2.6-pro-ultraspeed", Usage{PromptTokens: 1, CompletionTokens: 1}, 435_000 + 870_000, true},
		{"all cached", "mimo-v2.6-pro", Usage{PromptTokens: 100, CachedTokens: 100}, 100 * 3_600, true},
		{"cached beyond the prompt", "mimo-v2.6-pro", Usage{PromptTokens: 100, CachedTokens: 500}, 100 * 3_600, true},
		{"negative counts", "mimo-v2.6-pro", Usage{PromptTokens: -5, CachedTokens: -1, CompletionTokens: -9}, 0, true},
		{"nothing", "mimo-v2.6-flash", Usage{}, 0, true},
		{"unknown model", "gpt-4o", Usage{PromptTokens: 100}, 0, false},
		{"saturates", "mimo-v2.6-pro", Usage{PromptTokens: math.MaxInt64, CompletionTokens: math.MaxInt64}, math.MaxInt64, true},
		{"saturates on the sum", "mimo-v2.6-pro", Usage{PromptTokens: math.MaxInt64 / 435_000, CompletionTokens: math.MaxInt64 / 870_000}, math.MaxInt64, true},
	}
	for _, tc := range cases {
		pico, known := d.CostPicoUSD(tc.model, tc.u)
		usd, known2 := d.Cost(tc.model, tc.u)
		if pico != tc.pico || known != tc.known || known2 != known || usd != float64(tc.pico)/1e12 {
			t.Errorf("%s: CostPicoUSD = %d, %v; Cost = %v; want %d, %v", tc.name, pico, known, usd, tc.pico, tc.known)
		}
	}
	if usd, _ := d.Cost("mimo-v2.6-pro", Usage{PromptTokens: 40911, CompletionTokens: 673}); math.Abs(usd-0.018381795) > 1e-15 {
		t.Errorf("Cost = %v, want 0.018381795", usd)
	}
}

// The cost of a batch's summed usage is the sum of its calls' costs, to the
// pico-dollar: what a batch's cost total relies on.
func TestCostsAddUp(t *testing.T) {
	t.Parallel()
	d := Default()
	calls := []Usage{
		{PromptTokens: 1234, CachedTokens: 1000, CompletionTokens: 77},
		{PromptTokens: 99, CompletionTokens: 4096},
		{PromptTokens: 500_000, CachedTokens: 499_999, CompletionTokens: 1},
		{PromptTokens: 7, CachedTokens: 3, CompletionTokens: 131072},
	}
	var sum Usage
	var total int64
	for _, u := range calls {
		p, _ := d.CostPicoUSD("mimo-v2.6-flash", u)
		total += p
		sum.PromptTokens += u.PromptTokens
		sum.CachedTokens += u.CachedTokens
		sum.CompletionTokens += u.CompletionTokens
	}
	if p, _ := d.CostPicoUSD("mimo-v2.6-flash", sum); p != total {
		t.Errorf("cost of the sum = %d, sum of the costs = %d", p, total)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"", "mimo-v2.6-pro=0.435:0.0036:0.87", "a=1:2:3,b=.5:0:1000", " a = 1 : 2 : 3 ,,", "a=1:2", "=1:2:3",
		"a=1e3:1:1", "a=-1:1:1", "a=0.0000001:1:1", "a=1:1:1,a=1:1:1", "a\x00=1:1:1", "é=1:1:1",
		"a=01.10:0:0", "a=1000:1000:1000", "a=1000.0000001:0:0",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tab, err := Parse(s)
		if err != nil {
			if msg := err.Error(); !strings.HasPrefix(msg, "price entry ") || strings.ContainsAny(msg, "\n") {
				t.Fatalf("error %q is not one sentence naming the entry", msg)
			}
			return
		}
		again, err := Parse(tab.String())
		if err != nil {
			t.Fatalf("Parse(String()) of %q: %v (String() = %q)", s, err, tab.String())
		}
		if again.String() != tab.String() {
			t.Fatalf("round trip: %q became %q", tab.String(), again.String())
		}
		u := Usage{PromptTokens: 1_000_000, CachedTokens: 400_000, CompletionTokens: 1_000_000}
		for _, m := range tab.Models() {
			p, ok := tab.Lookup(m)
			if !ok || p.Input < 0 || p.CachedInput < 0 || p.Output < 0 || p.Input > MaxPrice {
				t.Fatalf("Lookup(%q) = %+v, %v", m, p, ok)
			}
			a, _ := tab.Cost(m, u)
			b, _ := again.Cost(m, u)
			want := 0.6*p.Input + 0.4*p.CachedInput + p.Output
			if a != b || math.Abs(a-want) > 1e-9*max(1, want) {
				t.Fatalf("Cost(%q) = %v, after a round trip %v, want %v", m, a, b, want)
			}
		}
	})
}
