// Command amqplb is a layer-4 load balancer for RabbitMQ (AMQP 0-9-1).
//
//	amqplb -f FILE        run with FILE (TOML if it ends in .toml, haproxy.cfg syntax otherwise)
//	amqplb -c -f FILE     check FILE like `haproxy -c`: exit 0 if it can run, 1 with FILE:LINE: message
//	amqplb -f FILE -admin ADDR   serve the admin API on ADDR ("off": not at all), whatever FILE says
//	amqplb -version       print the version
//	amqplb convert FILE   print the TOML equivalent of a haproxy.cfg
//
// SIGTERM and SIGINT stop accepting and wait up to global.drain_timeout for sessions to end.
// This file holds flags and signals only; app.go wires the packages together.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/amqplb/amqplb/config"
	"github.com/amqplb/amqplb/config/haproxycfg"
)

// version is set at build time with -ldflags "-X main.version=..."; otherwise it comes from the
// module's build information.
var version = ""

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "convert" {
		return convert(args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("amqplb", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("f", "", "configuration `FILE`: TOML (*.toml) or haproxy.cfg syntax (anything else)")
	check := fs.Bool("c", false, "check the configuration file and exit: 0 if valid, 1 with every error")
	showVersion := fs.Bool("version", false, "print the version and exit")
	adminListen := fs.String("admin", "", "serve the admin API, /metrics and the status page on `ADDR`, overriding [admin] listen\n(a haproxy.cfg has no place for it; \"off\" disables it)")
	// HAProxy's own flags, as Debian's haproxy.service passes them
	// (haproxy -Ws -f $CONFIG -p $PIDFILE -S /run/haproxy-master.sock, and -c -q to check before
	// a reload), so that replacing the binary's name in a unit file is enough.
	pidFile := fs.String("p", "", "write the process ID to `FILE` while running (HAProxy's -p)")
	quiet := fs.Bool("q", false, "quiet: -c prints errors only (HAProxy's -q)")
	fs.Bool("Ws", false, "accepted for HAProxy unit files: amqplb notifies systemd (Type=notify) whenever NOTIFY_SOCKET is set")
	fs.Bool("W", false, "accepted for HAProxy unit files: amqplb is a single process that reloads in place")
	masterSocket := fs.String("S", "", "accepted for HAProxy unit files and ignored: HAProxy's master CLI `socket` (amqplb has its admin API)")
	daemonize := fs.Bool("D", false, "accepted for HAProxy command lines: amqplb stays in the foreground (run it under a service manager)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: amqplb -f FILE [-c]\n       amqplb -version\n       amqplb convert FILE\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *showVersion {
		fmt.Fprintf(stdout, "amqplb %s (%s)\n", buildVersion(), runtime.Version())
		return 0
	}
	if *file == "" || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}

	// load reads the file with the command line's overrides and checks that it can run.
	load := func(path string) (*config.Config, error) {
		cfg, lines, err := haproxycfg.LoadLines(path)
		if err != nil {
			return nil, err
		}
		if *adminListen != "" {
			cfg.Admin.Listen = *adminListen
			if *adminListen == "off" {
				cfg.Admin.Listen = ""
			}
		}
		return cfg, runnable(cfg, lines)
	}
	cfg, err := load(*file)
	if cfg != nil && !(*check && *quiet) {
		for _, w := range cfg.Warnings {
			fmt.Fprintln(stderr, warningLine(w))
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if *check {
		if !*quiet {
			fmt.Fprintf(stdout, "Configuration file is valid: %s\n", *file)
		}
		return 0
	}

	sinks, problems := syslogHandlers(cfg.Global)
	defer func() {
		for _, h := range sinks {
			_ = h.Close()
		}
	}()
	log := withSyslog(newLogger(cfg.Global, stderr), sinks)
	for _, p := range problems {
		log.Warn("a syslog target is not used", "err", p)
	}
	if *daemonize {
		log.Warn("-D: amqplb does not daemonize; it runs in the foreground")
	}
	if *masterSocket != "" {
		log.Warn("-S: amqplb has no master CLI socket; ignored (the admin API serves its purpose)", "socket", *masterSocket)
	}
	// SIGTERM and SIGINT drain and stop, and so does HAProxy's soft-stop signal, SIGUSR1.
	// SIGHUP reloads, and so does HAProxy's master-worker reload signal, SIGUSR2.
	ctx, stop := signal.NotifyContext(context.Background(), stopSignals...)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, reloadSignals...)
	defer signal.Stop(hup)

	raiseFDLimit(log, cfg.Global.MaxConnections) // before dropping privileges: root may pass the hard limit
	a, err := newApp(cfg, log, load)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	if *pidFile != "" {
		if err := os.WriteFile(*pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			log.Error("cannot write the pid file", "err", err)
			a.closeListeners()
			return 1
		}
		// After switching users the file may not be ours to remove (HAProxy's master, which
		// stays root, removes it); the next start overwrites it.
		defer os.Remove(*pidFile)
	}
	if err := dropPrivileges(cfg.Global); err != nil {
		log.Error("cannot switch to the configured user", "err", err)
		a.closeListeners()
		return 1
	}
	if cfg.Global.User != "" {
		log.Info("switched user", "user", cfg.Global.User, "group", cfg.Global.Group, "uid", os.Getuid(), "gid", os.Getgid())
	}
	log.Info("amqplb started", "version", buildVersion(), "config", *file, "frontends", a.describe())
	notify(log, daemon.SdNotifyReady)
	if err := a.run(ctx, hup); err != nil {
		log.Error("stopped with an error", "err", err)
		return 1
	}
	return 0
}

// convert prints the TOML equivalent of a configuration file.
func convert(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: amqplb convert FILE")
		return 2
	}
	out, cfg, err := haproxycfg.ConvertFile(args[0])
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintln(stderr, warningLine(w))
	}
	if _, err := stdout.Write(out); err != nil {
		return 1
	}
	return 0
}

// notify tells systemd about the service's state (Type=notify units) when NOTIFY_SOCKET is set.
func notify(log *slog.Logger, state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		log.Warn("cannot notify systemd", "state", state, "err", err)
	}
}

// warningLine formats a configuration warning, "FILE:LINE: message", as compilers do:
// "FILE:LINE: warning: message", so that it still starts with its location.
func warningLine(w string) string {
	// The location is the file name, then ":LINE" when known, then ": ".
	if i := strings.Index(w, ": "); i >= 0 {
		return w[:i] + ": warning: " + w[i+2:]
	}
	return "warning: " + w
}

func newLogger(g config.Global, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(g.LogLevel)) // validated by config
	opts := &slog.HandlerOptions{Level: level}
	if g.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func buildVersion() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "devel"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return "devel-" + rev
}
