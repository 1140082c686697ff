package cli

import "testing"

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "512": 512, "4k": 4096, "4K": 4096, "16M": 16 << 20, "1G": 1 << 30,
		"1T": 1 << 40, "2GiB": 2 << 30, "3MB": 3 << 20, "7b": 7,
	} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "K", "1.5G", "-1", "12Q", "9999999E"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) accepted", in)
		}
	}
}
