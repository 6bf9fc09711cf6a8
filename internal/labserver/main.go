// Command labserver is the small backend used by tests, the demo and the
// benchmarks: it answers HTTP with its name and the client address it saw,
// holds long-lived TCP connections open, and answers UDP datagrams with its
// name. /healthz answers with the status code found in the file named by
// -health-file (200 when the file is missing), so a test can make one
// backend unhealthy while its port stays open.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
)

func main() {
	name := flag.String("name", "backend", "name reported in every answer")
	httpAddr := flag.String("http", "", "HTTP listen address (empty: off)")
	tcpAddr := flag.String("tcp", "", "line-echo TCP listen address: each line is answered with \"NAME CLIENT LINE\"")
	udpAddr := flag.String("udp", "", "UDP listen address: each datagram is answered with \"NAME CLIENT\"")
	healthFile := flag.String("health-file", "", "file holding the /healthz status code")
	flag.Parse()

	if *udpAddr != "" {
		pc, err := net.ListenPacket("udp", *udpAddr)
		if err != nil {
			log.Fatal(err)
		}
		go func() {
			buf := make([]byte, 2048)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				_ = n
				_, _ = pc.WriteTo([]byte(fmt.Sprintf("%s %s\n", *name, from)), from)
			}
		}()
	}
	if *tcpAddr != "" {
		ln, err := net.Listen("tcp", *tcpAddr)
		if err != nil {
			log.Fatal(err)
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func(c net.Conn) {
					defer c.Close()
					sc := bufio.NewScanner(c)
					for sc.Scan() {
						fmt.Fprintf(c, "%s %s %s\n", *name, c.RemoteAddr(), sc.Text())
					}
				}(c)
			}
		}()
	}
	if *httpAddr != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
			code := 200
			if b, err := os.ReadFile(*healthFile); err == nil {
				if c, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
					code = c
				}
			}
			w.WriteHeader(code)
			fmt.Fprintf(w, "%s %d\n", *name, code)
		})
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s %s\n", *name, r.RemoteAddr)
		})
		srv := &http.Server{Addr: *httpAddr, Handler: mux}
		go func() { log.Fatal(srv.ListenAndServe()) }()
	}
	fmt.Println("ready")
	select {}
}
