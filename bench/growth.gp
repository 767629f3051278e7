# growth.gp — evstore's growth curves, from bench_engine's growth.dat.
#
#   gnuplot -e "datafile='build/bench/growth.dat'; outdir='docs'" bench/growth.gp
#   (or: make bench-plots)
#
# Renders outdir/growth-open.png (open after a clean close, warm and cold
# page cache), growth-recovery.png (open after kill -9), growth-read.png
# (reading 100 events of one stream) and growth-rss.png (resident memory),
# each against the store's size, with SPEC §8's target as a dashed line.
# One point per store size in the file (0, then every store bench_engine
# built); the x axis is categorical (0, 1 M, 10 M, ... equally spaced).
# growth.dat is tab-separated: '#' lines (the last one names the columns),
# then one line per store size.

if (!exists("datafile")) datafile = "build/bench/growth.dat"
if (!exists("outdir")) outdir = "docs"

set datafile separator "\t"
set datafile commentschars "#"
set datafile missing "nan"

# the run, from the file's first comment line
run = system(sprintf("head -n1 '%s' | sed -e 's/^# bench_engine growth curves: //'", datafile))
npoints = int(system(sprintf("grep -c -v '^#' '%s'", datafile)))

set terminal pngcairo size 900,600 font "DejaVu Sans,11" linewidth 1.5 noenhanced
set grid ytics mytics xtics lc rgb "#dddddd"
set key below left Left reverse nobox maxrows 3
set xlabel "events in the store (streams = events / 10)"
set logscale y 10
set format y "%g"
set xrange [-0.5:npoints - 0.5]
set offsets 0, 0, graph 0.08, graph 0.04
set bars 2

# x = the line's index (column 0), labelled with column 2 ("0", "1 M", ...)
set output outdir."/growth-open.png"
set title "evstore: evs_open after a clean close\n".run
set ylabel "milliseconds (log scale)"
plot datafile using 0:4:5:6:xtic(2) with yerrorlines lw 2 pt 7 title "page cache warm: median (bars: min-max)", \
     datafile using 0:7 with linespoints lw 2 pt 5 dt 2 title "page cache dropped first", \
     100 with lines lc rgb "#aa0000" dt 3 title "SPEC §8 target at 10 M: 100 ms"

set output outdir."/growth-recovery.png"
set title "evstore: evs_open after kill -9 of a writer (~260 k events after its last checkpoint)\n".run
set ylabel "milliseconds (log scale)"
plot datafile using 0:8:9:10:xtic(2) with yerrorlines lw 2 pt 7 title "recovering open: median (bars: min-max of the rounds)", \
     1000 with lines lc rgb "#aa0000" dt 3 title "SPEC §8 target at 10 M: 1 s"

set output outdir."/growth-read.png"
set title "evstore: reading one stream (evs_iter_open + next to the end + close), page cache warm\n".run
set ylabel "microseconds per read (log scale)"
set label 1 "empty store:\nno stream to read" at first 0, graph 0.3 center textcolor rgb "#777777"
plot datafile using 0:12:xtic(2) with linespoints lw 2 pt 7 title "100 events of a long stream, p50", \
     datafile using 0:13 with linespoints lw 2 pt 7 title "same, p99", \
     datafile using 0:14 with linespoints lw 1 pt 6 dt 2 title "100 events backward from the end, p99", \
     datafile using 0:15 with linespoints lw 1 pt 4 title "a whole short stream (8-9 events), p50", \
     datafile using 0:16 with linespoints lw 1 pt 4 dt 2 title "same, p99", \
     1000 with lines lc rgb "#aa0000" dt 3 title "SPEC §8 target at 10 M: p99 1 ms"

unset label 1
set output outdir."/growth-rss.png"
set title "evstore: resident memory of a fresh process that opens the store, reads streams, then everything\n".run
set ylabel "MiB (log scale)"
plot datafile using 0:17:xtic(2) with linespoints lw 2 pt 7 title "after evs_open", \
     datafile using 0:18 with linespoints lw 2 pt 5 title "peak (VmHWM) after stream reads and a full read", \
     256 with lines lc rgb "#aa0000" dt 3 title "SPEC §8 target at 10 M events / 1 M streams: 256 MiB"

unset output
