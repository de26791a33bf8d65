package main

import (
	"context"
	"errors"
)

// Subcommands whose packages are still being built. Each moves to its own
// file when its package lands.

var errNotBuilt = errors.New("not built yet in this version of callstream")

func cmdRun(context.Context, *env, []string) error      { return errNotBuilt }
func cmdProduce(context.Context, *env, []string) error  { return errNotBuilt }
func cmdConsume(context.Context, *env, []string) error  { return errNotBuilt }
func cmdSimulate(context.Context, *env, []string) error { return errNotBuilt }
func cmdBackfill(context.Context, *env, []string) error { return errNotBuilt }
