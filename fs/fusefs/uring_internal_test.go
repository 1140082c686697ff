package fusefs

import "testing"

func TestCountCPUList(t *testing.T) {
	for _, c := range []struct {
		list string
		n    int
	}{{"0", 1}, {"0-1", 2}, {"0-3,8", 5}, {"0,2,4-5", 4}} {
		if n, err := countCPUList(c.list); err != nil || n != c.n {
			t.Errorf("countCPUList(%q) = %d, %v; want %d", c.list, n, err, c.n)
		}
	}
	for _, bad := range []string{"", "a", "3-1", "0-", "-1"} {
		if n, err := countCPUList(bad); err == nil {
			t.Errorf("countCPUList(%q) = %d, want an error", bad, n)
		}
	}
}
