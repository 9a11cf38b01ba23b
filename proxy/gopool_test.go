package proxy

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/amqplb/amqplb/internal/testenv"
)

// idleWorkers counts the pool's waiting workers.
func (p *goPool) idleWorkers() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for w := p.last; w != nil; w = w.prev {
		n++
	}
	return n
}

// dismiss ends every waiting worker of p (runtime.Goexit as its next function), for pools whose
// workers would wait past the test.
func (p *goPool) dismiss() {
	p.mu.Lock()
	var ws []*poolWorker
	for w := p.last; w != nil; w = w.prev {
		ws = append(ws, w)
	}
	for _, w := range ws {
		p.unlinkLocked(w)
	}
	p.mu.Unlock()
	for _, w := range ws {
		w.ch <- runtime.Goexit
	}
}

// A function given to the pool while a worker waits runs on that worker; functions that find
// no waiting worker each get a goroutine of their own.
func TestGoPoolReusesWaitingWorkers(t *testing.T) {
	p := &goPool{idleFor: time.Hour} // no worker leaves during the test: no timing involved
	t.Cleanup(p.dismiss)
	done := make(chan int, 1)
	p.Go(func() { done <- 1 })
	<-done
	testenv.Eventually(t, 10*time.Second, func() error {
		if n := p.idleWorkers(); n != 1 {
			return fmt.Errorf("%d waiting workers, want 1", n)
		}
		return nil
	})
	for i := 2; i <= 5; i++ {
		p.Go(func() { done <- i })
		if got := <-done; got != i {
			t.Fatalf("ran %d, want %d", got, i)
		}
		testenv.Eventually(t, 10*time.Second, func() error {
			if n := p.idleWorkers(); n != 1 {
				return fmt.Errorf("%d waiting workers, want 1", n)
			}
			return nil
		})
	}
	if n := p.started.Load(); n != 1 {
		t.Errorf("%d goroutines started for five functions one after the other, want 1", n)
	}

	var wg sync.WaitGroup
	release := make(chan struct{})
	for range 50 {
		wg.Add(1)
		p.Go(func() {
			defer wg.Done()
			<-release // all 50 run at once: 49 need goroutines of their own
		})
	}
	close(release)
	wg.Wait()
	if n := p.started.Load(); n != 50 {
		t.Errorf("%d goroutines started in all, want 50", n)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if n := p.idleWorkers(); n != 50 {
			return fmt.Errorf("%d waiting workers, want 50", n)
		}
		return nil
	})
}

// Waiting workers leave after idleFor, each unlinking itself, and the pool still works after.
func TestGoPoolWorkersLeaveWhenIdle(t *testing.T) {
	p := &goPool{idleFor: time.Millisecond}
	var wg sync.WaitGroup
	release := make(chan struct{})
	for range 20 {
		wg.Add(1)
		p.Go(func() {
			defer wg.Done()
			<-release
		})
	}
	close(release)
	wg.Wait()
	testenv.Eventually(t, 10*time.Second, func() error {
		if n := p.idleWorkers(); n != 0 {
			return fmt.Errorf("%d waiting workers, want 0", n)
		}
		return nil
	})
	done := make(chan struct{})
	p.Go(func() { close(done) })
	<-done
}
