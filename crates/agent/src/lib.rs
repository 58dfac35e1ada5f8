//! The node agent (`palisade agent`): the kernel's view of every
//! connection, drop, execution and raw socket on a node (from
//! [`palisade_sense`]), attributed to pods by cgroup, judged against the
//! declared policy by the same judge as `flows verify`, and sent as alerts
//! of the one alert schema the moment they are raised.

mod agent;
pub mod attribute;
pub mod baseline;
pub mod flows;
pub mod live;
pub mod metrics;
pub mod probe;
pub mod runtime;
pub mod watch;

pub use agent::{Agent, AgentOptions, EventSource, Input, Reload, say};
