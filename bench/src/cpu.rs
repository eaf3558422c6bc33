//! CPU time, for "CPU cost per request": the whole machine's busy time from `/proc/stat` (every
//! process, the kernel, interrupts and softirq included) and a process's own time from
//! `getrusage`, so that the load generator's own share can be taken out.

use std::time::Duration;

use crate::sys;

/// Busy and total CPU time of the whole machine since boot.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MachineCpu {
    pub busy: Duration,
    pub total: Duration,
}

/// Parses the aggregate `cpu` line of `/proc/stat` (times in USER_HZ ticks).
pub fn parse_proc_stat(text: &str, ticks_per_second: u64) -> Option<MachineCpu> {
    let line = text.lines().find(|line| line.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    if fields.len() < 8 {
        return None;
    }
    // user nice system idle iowait irq softirq steal [guest guest_nice: already in user/nice].
    // Steal is time the hypervisor gave to someone else: neither busy nor ours.
    let busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6];
    let total = busy + fields[3] + fields[4] + fields[7];
    let to_duration = |ticks: u64| Duration::from_secs_f64(ticks as f64 / ticks_per_second as f64);
    Some(MachineCpu {
        busy: to_duration(busy),
        total: to_duration(total),
    })
}

impl MachineCpu {
    pub fn sample() -> MachineCpu {
        let hz = sys::clock_ticks_per_second().unwrap_or(100);
        std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|text| parse_proc_stat(&text, hz))
            .unwrap_or_default()
    }

    /// Busy CPU time between `earlier` and `self`.
    pub fn busy_since(&self, earlier: &MachineCpu) -> Duration {
        self.busy.saturating_sub(earlier.busy)
    }
}

/// User plus system CPU time of this process so far.
pub fn own_cpu_time() -> Duration {
    rusage_time(libc::RUSAGE_SELF)
}

/// User plus system CPU time of this process's waited-for children so far.
pub fn children_cpu_time() -> Duration {
    rusage_time(libc::RUSAGE_CHILDREN)
}

fn rusage_time(who: libc::c_int) -> Duration {
    let Some(usage) = sys::rusage(who) else {
        return Duration::ZERO;
    };
    let time = |tv: libc::timeval| Duration::new(tv.tv_sec as u64, tv.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_busy_counts_kernel_and_softirq_but_not_idle_or_steal() {
        let text = "cpu  100 5 50 1000 20 3 7 1 0 0\ncpu0 50 2 25 500 10 1 3 0 0 0\nintr 1\n";
        let cpu = parse_proc_stat(text, 100).unwrap();
        assert_eq!(cpu.busy, Duration::from_secs_f64(1.65));
        assert_eq!(cpu.total, Duration::from_secs_f64(11.86));
        assert!(parse_proc_stat("cpu0 1 2 3\n", 100).is_none());
        assert!(parse_proc_stat("cpu  1 2 x 4 5 6 7 8\n", 100).is_none());
    }

    #[test]
    fn live_samples_move_forward() {
        let before = MachineCpu::sample();
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(50) {
            std::hint::black_box(0u64);
        }
        let after = MachineCpu::sample();
        assert!(after.total > before.total);
        assert!(own_cpu_time() > Duration::ZERO);
    }
}
