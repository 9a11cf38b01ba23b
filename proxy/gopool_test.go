package proxy

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/amqplb/amqplb/internal/testenv"
)

// A function given to the pool while a worker waits runs on that worker; workers that wait
// longer than workerIdle exit; many functions at once each get a goroutine.
func TestGoPool(t *testing.T) {
	var p goPool
	base := runtime.NumGoroutine()
	done := make(chan int, 1)
	p.Go(func() { done <- 1 })
	<-done
	testenv.Eventually(t, 5*time.Second, func() error {
		p.mu.Lock()
		defer p.mu.Unlock()
		if len(p.idle) != 1 {
			return fmt.Errorf("%d idle workers, want 1", len(p.idle))
		}
		return nil
	})
	p.Go(func() { done <- 2 })
	if got := <-done; got != 2 {
		t.Fatalf("ran %d", got)
	}
	if n := runtime.NumGoroutine(); n > base+1 {
		t.Errorf("%d goroutines after two functions in a row, want at most %d: the waiting worker was not used", n, base+1)
	}

	var wg sync.WaitGroup
	release := make(chan struct{})
	for range 50 {
		wg.Add(1)
		p.Go(func() {
			defer wg.Done()
			<-release // all 50 run at once
		})
	}
	close(release)
	wg.Wait()
	testenv.Eventually(t, 10*time.Second, func() error {
		if n := runtime.NumGoroutine(); n > base {
			return fmt.Errorf("%d goroutines, want %d: idle workers did not exit", n, base)
		}
		return nil
	})
}
