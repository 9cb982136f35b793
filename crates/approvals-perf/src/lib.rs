//! Programs that run one hot path of the gate a given number of times, for
//! `valgrind --tool=callgrind` to count its instructions (`.ci/instructions`). Counting
//! instructions, not time, gives a figure that does not move with the machine's load.
