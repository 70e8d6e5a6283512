package price_test

import (
	"fmt"

	"github.com/mimoq/mimoq/internal/price"
)

func Example() {
	// MIMOQ_PRICES overrides Flash; Pro keeps its list price.
	prices, err := price.Parse("mimo-v2.6-flash=0.1:0.002:0.2")
	if err != nil {
		panic(err)
	}
	// A call of 40,911 prompt tokens (none cached) and 673 completion tokens.
	usd, known := prices.Cost("mimo-v2.6-pro", price.Usage{PromptTokens: 40911, CompletionTokens: 673})
	fmt.Printf("%.9f %v\n", usd, known)
	// 10,000 prompt tokens of which 8,000 came from the prompt cache.
	usd, _ = prices.Cost("mimo-v2.6-flash", price.Usage{PromptTokens: 10000, CachedTokens: 8000, CompletionTokens: 500})
	fmt.Printf("%.9f\n", usd)
	_, known = prices.Cost("gpt-4o", price.Usage{PromptTokens: 1})
	fmt.Println(known)

	_, err = price.Parse("mimo-v2.6-pro=0.435:0.0036")
	fmt.Println(err)
	// Output:
	// 0.018381795 true
	// 0.000316000
	// false
	// price entry "mimo-v2.6-pro=0.435:0.0036": want model=input:cached:output in USD per 1M tokens
}
