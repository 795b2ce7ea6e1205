package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
)

// newLogger builds the process's one logger: JSON by default, console format when format is
// "console" or "auto" on a terminal. Colour codes are written only to a terminal, so a
// console log redirected into a file stays plain text.
func newLogger(w io.Writer, format, level string) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		return zerolog.Nop(), fmt.Errorf("LOG_LEVEL=%q: want debug, info, warn or error", level)
	}
	switch format {
	case "json":
	case "console":
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly, NoColor: !isTerminal(w)}
	case "auto", "":
		if isTerminal(w) {
			w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
		}
	default:
		return zerolog.Nop(), fmt.Errorf("LOG_FORMAT=%q: want json, console or auto", format)
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}

// asynqLogger routes asynq's own log lines into zerolog. While outage reports Redis down,
// asynq's warnings and errors (every poll fails then) are held back by it; a nil outage
// holds nothing back.
type asynqLogger struct {
	l      zerolog.Logger
	outage *redisOutage
}

func (a asynqLogger) Debug(args ...any) {
	a.l.Debug().Str("component", "asynq").Msg(fmt.Sprint(args...))
}
func (a asynqLogger) Info(args ...any) { a.l.Info().Str("component", "asynq").Msg(fmt.Sprint(args...)) }
func (a asynqLogger) Warn(args ...any) {
	if msg := fmt.Sprint(args...); !a.outage.holdBack("asynq", msg) {
		a.l.Warn().Str("component", "asynq").Msg(msg)
	}
}
func (a asynqLogger) Error(args ...any) {
	if msg := fmt.Sprint(args...); !a.outage.holdBack("asynq", msg) {
		a.l.Error().Str("component", "asynq").Msg(msg)
	}
}
func (a asynqLogger) Fatal(args ...any) {
	a.l.Fatal().Str("component", "asynq").Msg(fmt.Sprint(args...))
}

// syncWriter serialises writes: the logger, progress lines and messages share stderr, and
// a bytes.Buffer (tests) is not safe for concurrent writers. It passes the *os.File through
// Fd so that terminal detection still works.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}

// isTerminal reports whether w (or the file under a syncWriter) is a terminal.
func isTerminal(w io.Writer) bool {
	if s, ok := w.(*syncWriter); ok {
		w = s.w
	}
	f, ok := w.(*os.File)
	return ok && isatty.IsTerminal(f.Fd())
}
