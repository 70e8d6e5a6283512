package lane

import (
	"fmt"
	"strings"
	"testing"
)

func TestParseLimits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    map[string]Limit
		wantErr string // part of the error, naming the bad entry
	}{
		{name: "empty", in: "", want: map[string]Limit{}},
		{name: "spaces only", in: "  ", want: map[string]Limit{}},
		{name: "one", in: "mimo-v2.6-pro=50:2000000", want: map[string]Limit{"mimo-v2.6-pro": {RPM: 50, TPM: 2000000}}},
		{
			name: "two with unlimited tokens and spaces",
			in:   " mimo-v2.6-pro = 50:2000000 , mimo-v2.6-flash=200:0,",
			want: map[string]Limit{"mimo-v2.6-pro": {RPM: 50, TPM: 2000000}, "mimo-v2.6-flash": {RPM: 200, TPM: 0}},
		},
		{name: "all unlimited", in: "m=0:0", want: map[string]Limit{"m": {}}},
		{name: "bad number", in: "mimo-v2.6-pro=fifty:2000000", wantErr: `"mimo-v2.6-pro=fifty:2000000": requests per minute "fifty"`},
		{name: "bad tokens", in: "a=1:2,b=3:1e6", wantErr: `"b=3:1e6": tokens per minute "1e6"`},
		{name: "missing equals", in: "mimo-v2.6-pro:50:100", wantErr: `"mimo-v2.6-pro:50:100" has no '='`},
		{name: "missing colon", in: "mimo-v2.6-pro=50", wantErr: `"mimo-v2.6-pro=50" has no ':'`},
		{name: "empty model", in: "=50:100", wantErr: `"=50:100" names no model`},
		{name: "negative rpm", in: "m=-1:100", wantErr: `"m=-1:100": requests per minute "-1"`},
		{name: "negative tpm", in: "m=1:-100", wantErr: `"m=1:-100": tokens per minute "-100"`},
		{name: "rpm overflows int32", in: "m=99999999999:1", wantErr: `requests per minute "99999999999"`},
		{name: "duplicate", in: "m=1:1,m=2:2", wantErr: "listed twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseLimits(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseLimits(%q) error = %v, want one containing %s", tt.in, err, tt.wantErr)
				}
				if got != nil {
					t.Errorf("ParseLimits(%q) = %v with an error, want nil", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseLimits(%q): %v", tt.in, err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("ParseLimits(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func FuzzParseLimits(f *testing.F) {
	for _, s := range []string{"", "mimo-v2.6-pro=50:2000000,mimo-v2.6-flash=200:0", "=:", "a=1:2,a=1:2", "a=-1:0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseLimits(s)
		if err != nil {
			return
		}
		for m, l := range got {
			if m == "" || l.RPM < 0 || l.TPM < 0 {
				t.Fatalf("ParseLimits(%q) accepted %q=%+v", s, m, l)
			}
		}
	})
}

func ExampleParseLimits() {
	limits, err := ParseLimits("mimo-v2.6-pro=50:2000000,mimo-v2.6-flash=200:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(limits["mimo-v2.6-pro"], limits["mimo-v2.6-flash"])

	_, err = ParseLimits("mimo-v2.6-pro=50:2000000,mimo-v2.6-flash=lots:0")
	fmt.Println(err)
	// Output:
	// {50 2000000} {200 0}
	// model limit "mimo-v2.6-flash=lots:0": requests per minute "lots" is not a whole number of at least 0
}
