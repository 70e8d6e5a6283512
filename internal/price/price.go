// Package price knows what MiMo models cost and what a call cost: the
// built-in list prices of the current models, the overrides of MIMOQ_PRICES,
// and the cost of a call's (or a batch's) token usage.
//
// Prices are USD per 1M tokens, in three parts: input (prompt tokens not
// served from the prompt cache), cached input (prompt tokens served from it)
// and output (completion tokens, reasoning included: MiMo counts reasoning
// inside completion_tokens and bills it once). Costs are counted in whole
// pico-dollars (1e-12 USD) — a price with at most six decimals is a whole
// number of pico-dollars per token — so that the costs of a batch's calls
// add up exactly to the cost of its summed usage.
package price

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strconv"
	"strings"
)

// Price is what one model costs, in USD per 1M tokens.
type Price struct {
	// Input is the price of prompt tokens not served from the prompt cache.
	Input float64
	// CachedInput is the price of prompt tokens served from the prompt cache.
	CachedInput float64
	// Output is the price of completion tokens, reasoning included.
	Output float64
}

// Usage is the token counts a cost is computed from: one call's, or the sum
// of many.
type Usage struct {
	// PromptTokens counts every prompt token, cached ones included.
	PromptTokens int64
	// CachedTokens is the part of PromptTokens served from the prompt cache.
	CachedTokens int64
	// CompletionTokens counts the completion tokens, reasoning included.
	CompletionTokens int64
}

// MaxPrice is the highest price Parse accepts, in USD per 1M tokens: far
// above any model's, low enough that a cost cannot overflow.
const MaxPrice = 1000

// maxDecimals is how many decimals a price may have: one millionth of a
// dollar per 1M tokens is one pico-dollar per token.
const maxDecimals = 6

// rates is a price in pico-dollars per token.
type rates struct{ input, cached, output int64 }

func (r rates) price() Price {
	return Price{Input: float64(r.input) / 1e6, CachedInput: float64(r.cached) / 1e6, Output: float64(r.output) / 1e6}
}

// Table maps model names to prices. It is not changed once built, and is
// safe for concurrent use. A nil *Table knows no price.
type Table struct {
	prices map[string]rates
	// priceOf names, for a model with no price of its own, the model whose
	// price it takes.
	priceOf map[string]string
}

// List prices of the current MiMo models, in USD per 1M tokens (Xiaomi's
// pay-as-you-go table, 2026-09; docs/mimo-api.md).
var builtIn = map[string]rates{
	"mimo-v2.6-pro":   {input: 435_000, cached: 3_600, output: 870_000}, // 0.435 / 0.0036 / 0.87
	"mimo-v2.6-flash": {input: 140_000, cached: 2_800, output: 280_000}, // 0.14 / 0.0028 / 0.28
}

// builtInPriceOf: no public price of mimo-v2.6-pro-ultraspeed could be
// confirmed (it is sold under contract); it is the Pro model served faster,
// so it takes Pro's price — a lower bound — until MIMOQ_PRICES gives it one.
var builtInPriceOf = map[string]string{
	"mimo-v2.6-pro-ultraspeed": "mimo-v2.6-pro",
}

// Default returns the built-in list prices of the current MiMo models:
// mimo-v2.6-pro 0.435 / 0.0036 / 0.87 and mimo-v2.6-flash 0.14 / 0.0028 / 0.28
// USD per 1M tokens (input / cached input / output). mimo-v2.6-pro-ultraspeed
// takes mimo-v2.6-pro's price: its own is not public.
func Default() *Table {
	t := &Table{prices: make(map[string]rates, len(builtIn)), priceOf: make(map[string]string, len(builtInPriceOf))}
	for m, r := range builtIn {
		t.prices[m] = r
	}
	for m, of := range builtInPriceOf {
		t.priceOf[m] = of
	}
	return t
}

// Parse reads MIMOQ_PRICES: a comma list of model=input:cached:output
// entries in USD per 1M tokens, e.g. "mimo-v2.6-pro=0.435:0.0036:0.87". The
// entries are laid over [Default]: a listed model gets the listed price, the
// others keep theirs (and a model that takes another's price follows an
// override of that one). An empty s gives the defaults. Prices are plain
// decimals of at most six places, up to [MaxPrice]; a model may be listed
// once. An error is one sentence naming the entry.
func Parse(s string) (*Table, error) {
	t := Default()
	seen := map[string]bool{}
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		model, r, err := parseEntry(item)
		if err != nil {
			return nil, err
		}
		if seen[model] {
			return nil, fmt.Errorf("price entry %s: model %s is priced twice", quote(item), model)
		}
		seen[model] = true
		t.prices[model] = r
	}
	return t, nil
}

func parseEntry(item string) (string, rates, error) {
	bad := func(format string, args ...any) (string, rates, error) {
		return "", rates{}, fmt.Errorf("price entry %s: %s", quote(item), fmt.Sprintf(format, args...))
	}
	model, spec, ok := strings.Cut(item, "=")
	model = strings.TrimSpace(model)
	parts := strings.Split(spec, ":")
	switch {
	case !ok || len(parts) != 3:
		return bad("want model=input:cached:output in USD per 1M tokens")
	case model == "":
		return bad("the model name is empty")
	case strings.ContainsFunc(model, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return bad("the model name must not contain spaces or control characters")
	}
	var got [3]int64
	for i, name := range []string{"input", "cached input", "output"} {
		v, err := parsePico(strings.TrimSpace(parts[i]))
		if err != nil {
			return bad("the %s price %s %v", name, quote(strings.TrimSpace(parts[i])), err)
		}
		got[i] = v
	}
	return model, rates{input: got[0], cached: got[1], output: got[2]}, nil
}

var (
	errNotDecimal   = errors.New("must be a plain decimal number such as 0.435")
	errTooPrecise   = fmt.Errorf("has more than %d decimal places", maxDecimals)
	errAboveMaximum = fmt.Errorf("is above the maximum of %d USD per 1M tokens", MaxPrice)
)

// parsePico reads a decimal price in USD per 1M tokens as pico-dollars per
// token, exactly: digits with at most one dot, no sign or exponent.
func parsePico(s string) (int64, error) {
	whole, frac, hasDot := strings.Cut(s, ".")
	if !allDigits(whole) || !allDigits(frac) || (whole == "" && frac == "") || (hasDot && frac == "") {
		return 0, errNotDecimal
	}
	frac = strings.TrimRight(frac, "0")
	if len(frac) > maxDecimals {
		return 0, errTooPrecise
	}
	whole = strings.TrimLeft(whole, "0")
	if len(whole) > 4 {
		return 0, errAboveMaximum
	}
	w, _ := strconv.ParseInt("0"+whole, 10, 64)
	f, _ := strconv.ParseInt("0"+frac+strings.Repeat("0", maxDecimals-len(frac)), 10, 64)
	v := w*1_000_000 + f
	if v > MaxPrice*1_000_000 {
		return 0, errAboveMaximum
	}
	return v, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// quote quotes an entry for an error message, shortened if long.
func quote(s string) string {
	const max = 80
	if len(s) > max {
		return strconv.Quote(s[:max]) + "…"
	}
	return strconv.Quote(s)
}

func (t *Table) rates(model string) (rates, bool) {
	if t == nil {
		return rates{}, false
	}
	if r, ok := t.prices[model]; ok {
		return r, true
	}
	if of, ok := t.priceOf[model]; ok {
		r, ok := t.prices[of]
		return r, ok
	}
	return rates{}, false
}

// Lookup returns the price of model, its own or the one it takes.
func (t *Table) Lookup(model string) (Price, bool) {
	r, ok := t.rates(model)
	return r.price(), ok
}

// Cost returns what usage cost on model in USD, and false (and 0) when the
// table has no price for model. Cached prompt tokens are billed at the
// cached rate, the rest of the prompt at the input rate, completion tokens at
// the output rate. Negative counts are taken as 0, and cached tokens beyond
// the prompt as the whole prompt.
func (t *Table) Cost(model string, u Usage) (usd float64, known bool) {
	p, ok := t.CostPicoUSD(model, u)
	return float64(p) / 1e12, ok
}

// CostPicoUSD is [Table.Cost] in whole pico-dollars (1e-12 USD): exact, so
// that per-call costs add up to the cost of their summed usage. A cost
// beyond math.MaxInt64 pico-dollars (about 9.2 million USD) is capped there.
func (t *Table) CostPicoUSD(model string, u Usage) (pico int64, known bool) {
	r, ok := t.rates(model)
	if !ok {
		return 0, false
	}
	prompt, cached, completion := max(u.PromptTokens, 0), max(u.CachedTokens, 0), max(u.CompletionTokens, 0)
	cached = min(cached, prompt)
	var sum uint64
	for _, term := range [3][2]int64{{prompt - cached, r.input}, {cached, r.cached}, {completion, r.output}} {
		hi, lo := bits.Mul64(uint64(term[0]), uint64(term[1]))
		s, carry := bits.Add64(sum, lo, 0)
		if hi != 0 || carry != 0 || s > math.MaxInt64 {
			return math.MaxInt64, true
		}
		sum = s
	}
	return int64(sum), true
}

// Models returns the models the table prices, their own or another's,
// sorted.
func (t *Table) Models() []string {
	if t == nil {
		return nil
	}
	var out []string
	for m := range t.prices {
		out = append(out, m)
	}
	for m, of := range t.priceOf {
		if _, own := t.prices[m]; !own {
			if _, ok := t.prices[of]; ok {
				out = append(out, m)
			}
		}
	}
	slices.Sort(out)
	return out
}

// String writes the models' own prices in the form [Parse] reads, sorted by
// model; a model that takes another's price is left out, as Parse leaves it.
func (t *Table) String() string {
	if t == nil {
		return ""
	}
	models := make([]string, 0, len(t.prices))
	for m := range t.prices {
		models = append(models, m)
	}
	slices.Sort(models)
	parts := make([]string, len(models))
	for i, m := range models {
		r := t.prices[m]
		parts[i] = m + "=" + formatPico(r.input) + ":" + formatPico(r.cached) + ":" + formatPico(r.output)
	}
	return strings.Join(parts, ",")
}

// formatPico writes pico-dollars per token as USD per 1M tokens, exactly.
func formatPico(v int64) string {
	s := strconv.FormatInt(v/1_000_000, 10)
	if f := v % 1_000_000; f != 0 {
		s += "." + strings.TrimRight(fmt.Sprintf("%06d", f), "0")
	}
	return s
}
