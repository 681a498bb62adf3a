package main

import (
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	secs, _ := strconv.Atoi(os.Args[1])
	var n int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(time.Duration(secs) * time.Second)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(seed int64) {
			defer wg.Done()
			r := rand.New(rand.NewSource(seed))
			buf := make([]byte, 4096)
			m := map[string]int{}
			for time.Now().Before(deadline) {
				for i := 0; i < 1000; i++ {
					l := 65 + r.Intn(400)
					off := r.Intn(len(buf) - l)
					buf[off] = byte(i)
					m[string(buf[off:off+l])]++
					if len(m) > 5000 {
						m = map[string]int{}
					}
				}
				atomic.AddInt64(&n, 1000)
			}
		}(int64(g))
	}
	wg.Wait()
	fmt.Println("ok hashes:", n)
}
