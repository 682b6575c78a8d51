package bounded

import "testing"

func TestMap(t *testing.T) {
	tests := []struct {
		name    string
		max     int
		puts    int
		wantLen int
	}{
		{name: "under the bound", max: 10, puts: 5, wantLen: 5},
		{name: "at the bound", max: 10, puts: 10, wantLen: 10},
		{name: "past the bound", max: 10, puts: 100, wantLen: 10},
		{name: "no bound", max: 0, puts: 100, wantLen: 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := Map[int, int]{Max: tt.max}
			for i := range tt.puts {
				m.Put(i, i)
			}
			if m.Len() != tt.wantLen {
				t.Fatalf("Len %d, want %d", m.Len(), tt.wantLen)
			}
			last := tt.puts - 1
			if v, ok := m.Get(last); !ok || v != last {
				t.Fatalf("the last key put: %d, %v", v, ok)
			}
			m.Put(last, -1) // a key held: drops nothing
			if v, _ := m.Get(last); v != -1 || m.Len() != tt.wantLen {
				t.Fatalf("Put again: %d, Len %d", v, m.Len())
			}
			m.Delete(last)
			if _, ok := m.Get(last); ok {
				t.Fatal("a deleted key is still there")
			}
			m.Clear()
			if m.Len() != 0 {
				t.Fatalf("Len %d after Clear", m.Len())
			}
		})
	}
}
