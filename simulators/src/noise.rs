//! Deterministic measurement noise: a seeded splitmix64 stream with Gaussian samples, so a run of
//! the simulator can be repeated exactly.

pub struct Noise {
    state: u64,
    spare: Option<f64>,
}

impl Noise {
    pub fn new(seed: u64) -> Self {
        Noise {
            state: seed,
            spare: None,
        }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    /// A normal sample with standard deviation `sigma` (Box–Muller, both halves used).
    pub fn gauss(&mut self, sigma: f64) -> f64 {
        if let Some(z) = self.spare.take() {
            return z * sigma;
        }
        let (u1, u2) = (self.unit(), self.unit());
        let radius = (-2.0 * u1.ln()).sqrt();
        let angle = std::f64::consts::TAU * u2;
        self.spare = Some(radius * angle.sin());
        radius * angle.cos() * sigma
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaussian_samples_have_the_requested_spread() {
        let mut noise = Noise::new(7);
        let n = 20_000;
        let samples: Vec<f64> = (0..n).map(|_| noise.gauss(2.0)).collect();
        let mean = samples.iter().sum::<f64>() / n as f64;
        let var = samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.05, "mean {mean}");
        assert!((var.sqrt() - 2.0).abs() < 0.05, "sigma {}", var.sqrt());
    }
}
