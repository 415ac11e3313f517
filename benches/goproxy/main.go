// The Go reference proxy for `make bench`: a plain net/http/httputil.ReverseProxy (the proxy core
// of the Go llamactl and of llama-swap) in front of one upstream. Standard library only, so
// `go build` works offline. Since Go 1.19 the runtime raises its own soft open-file limit to the
// hard limit at start, as nginx does with worker_rlimit_nofile; the bench starts it with the soft
// limit a systemd service gets by default to show that it does.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"runtime"
	"syscall"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on (port 0: any free port)")
	upstream := flag.String("upstream", "", "where every request goes, as http://host:port")
	version := flag.Bool("version", false, "print the Go version it was built with and exit")
	flag.Parse()
	if *version {
		fmt.Println("go proxy, built with", runtime.Version())
		return
	}
	target, err := url.Parse(*upstream)
	if err != nil || target.Scheme != "http" || target.Host == "" {
		log.Fatalf("goproxy: -upstream %q is not an http://host:port URL", *upstream)
	}

	proxy := httputil.NewSingleHostReverseProxy(target)
	// Every chunk goes to the client as soon as it arrives: streamed answers are never held back
	// (llamactl, and nginx with proxy_buffering off, do the same).
	proxy.FlushInterval = -1
	proxy.Transport = &http.Transport{
		// Loopback only: an HTTP_PROXY in the environment must not change the route.
		Proxy: nil,
		DialContext: (&net.Dialer{
			Timeout:   5 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		// The default keeps 2 idle connections per host: with thousands of concurrent streams
		// nearly every request would dial afresh and leave a TIME_WAIT socket behind.
		MaxIdleConns:        0, // no overall cap
		MaxIdleConnsPerHost: 16384,
		MaxConnsPerHost:     0, // no cap on connections in use
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	errLog := log.New(os.Stderr, "goproxy: ", log.LstdFlags)
	proxy.ErrorLog = errLog

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("goproxy: cannot listen on %s: %v", *listen, err)
	}
	// The bench reads the address from this line (with port 0 only the listener knows it).
	fmt.Fprintf(os.Stderr, "goproxy: %s, open files %s, proxying to %s, listening on %s\n",
		runtime.Version(), openFiles(), target, ln.Addr())
	server := &http.Server{
		Handler:           proxy,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          errLog,
	}
	log.Fatalf("goproxy: %v", server.Serve(ln))
}

// openFiles is the soft/hard open-file limit in force, after the runtime raised the soft one.
func openFiles() string {
	var limit syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &limit); err != nil {
		return "unknown"
	}
	return fmt.Sprintf("soft %d hard %d", limit.Cur, limit.Max)
}
