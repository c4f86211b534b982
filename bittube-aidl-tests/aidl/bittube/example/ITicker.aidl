package bittube.example;

import bittube.example.TubeEnd;

interface ITicker {
    /** A tube that carries the ticks 0..count, then closes. */
    TubeEnd subscribe(int count);
}
