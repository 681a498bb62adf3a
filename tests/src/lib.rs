//! VM test harness
